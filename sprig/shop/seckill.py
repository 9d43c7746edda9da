"""Flash sales: the fast path in front of the database, the order task's work, and cancellation.

The database is the truth: an order is created only together with a conditional decrement of
`stock_left` (never below 0) and a unique (user, item, live) key allows one live order per user.
In front of it, shared by every web process through the cache:

- a counter per sale, `seckill:<item>:stock`: units not yet claimed (stock_left minus the orders
  still in the queue). At 0 the sale answers "sold out" without touching the database or queue.
- a marker per buyer, `seckill:<item>:user:<id>`: this user has a claim or a live order.

`claim` takes a unit and sets the marker in one atomic step (a Lua script on Redis). If the
cache forgets either (a restart), the counter is set again from the database and the database's
own checks keep the invariants; the fast path is only ever an optimisation.
"""
import datetime
import json
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from peewee import SQL, IntegrityError

from models import Course, Order, SeckillItem, TaskRecord, User, database, utcnow
from sprig.cache import aside
from sprig.cache.invalidation import writing
from sprig.cache.store import cache
from sprig.db.prepared import first, prepared
from sprig.queue import records
from sprig.settings import Settings
from sprig.shop import audit, keys
from sprig.shop.content import stale

if TYPE_CHECKING:
    from sprig.queue.engine import SprigHuey

log = logging.getLogger('sprig.seckill')
KEEP_AFTER_SALE = 86400  # seconds the counter and markers outlive their sale
CLAIM_GRACE = 10  # seconds a claim may wait for its task's record (it takes milliseconds)
UNFINISHED = ('queued', 'scheduled', 'started', 'retrying')


def counter_key(item_id: int) -> str:
    return f'seckill:{item_id}:stock'


def marker_key(item_id: int, user_id: int) -> str:
    return f'seckill:{item_id}:user:{user_id}'


def iso(moment: datetime.datetime) -> str:
    return moment.replace(tzinfo=datetime.UTC).isoformat()


def parse(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=None)


def state(sale: dict, stock_left: int, now: datetime.datetime) -> str:
    if now < parse(sale['starts_at']):
        return 'upcoming'
    if now >= parse(sale['ends_at']):
        return 'ended'
    return 'sold_out' if stock_left <= 0 else 'active'


def sale_view(item: SeckillItem) -> dict:
    """What stays the same during a sale (cached); stock and state are added per request."""
    return {'id': item.id, 'course': {'id': item.course.id, 'name': item.course.name},
            'price': f'{item.price:.2f}', 'stock_total': item.stock_total,
            'starts_at': iso(item.starts_at), 'ends_at': iso(item.ends_at)}


def sales(settings: Settings) -> list[dict]:
    """Every sale not over for more than a day, soonest first."""
    def compute() -> list[dict]:
        recent = utcnow() - datetime.timedelta(days=1)
        rows = (SeckillItem.select(SeckillItem, Course).join(Course)
                .where((SeckillItem.ends_at > recent) & Course.is_live())
                .order_by(SeckillItem.starts_at, SeckillItem.id))
        return [sale_view(item) for item in rows]
    return aside.read(keys.SALES, compute, settings.cache.ttl).value


def sale(item_id: int, settings: Settings) -> dict | None:
    def compute() -> dict | None:
        item = (SeckillItem.select(SeckillItem, Course).join(Course)
                .where((SeckillItem.id == item_id) & Course.is_live()).first())
        return None if item is None else sale_view(item)
    # Every press reads it: a plain key, not a namespace (one round trip less), kept near.
    return aside.read_near(keys.sale(item_id), compute, settings.cache.ttl).value


def with_stock(sale: dict, now: datetime.datetime) -> dict:
    """The sale as the API shows it: units left to claim and the state, live."""
    left = aside.or_else(lambda: cache.get(counter_key(sale['id'])), lambda: None)
    if left is None:
        left = SeckillItem.get_by_id(sale['id']).stock_left
    left = max(0, left)
    return sale | {'stock_left': left, 'state': state(sale, left, now)}


def keep_for(sale: dict, settings: Settings, now: datetime.datetime) -> float:
    """Seconds the sale's counter and markers should live."""
    return (parse(sale['ends_at']) - now).total_seconds() + settings.seckill.payment_timeout + KEEP_AFTER_SALE


def claim(sale: dict, user: User, settings: Settings) -> str:
    """Take a unit for user in the shared counter: 'claimed', 'held' or 'empty'."""
    now = utcnow()
    ttl = max(60.0, keep_for(sale, settings, now))
    # The marker holds the claim's time: reconcile_claims judges only claims old enough.
    taken = cache.claim(counter_key(sale['id']), marker_key(sale['id'], user.id), ttl, time.time())
    if taken == 'unknown':  # first press since the cache started: count from the database
        cache.add(counter_key(sale['id']), SeckillItem.get_by_id(sale['id']).stock_left, ttl=ttl)
        taken = cache.claim(counter_key(sale['id']), marker_key(sale['id'], user.id), ttl, time.time())
    return taken


def reconcile_claims() -> int:
    """Give back the seats of claims that neither a live order nor an unfinished order task
    backs: the web process died between a press's claim and its enqueue (or the enqueue failed,
    and so did the release, the cache being down). Such a seat was lost to the sale, and its
    buyer told "you already hold an order" until the marker expired. Claims younger than
    CLAIM_GRACE seconds are left alone: their enqueue may be under way. Returns how many went back."""
    now, returned = time.time(), 0
    for item_id in open_sale_ids():
        marks = cache.scan(f'seckill:{item_id}:user:')
        old = {int(key.rsplit(':', 1)[1]) for key, mark in marks.items() if now - float(mark) > CLAIM_GRACE}
        for user_id in sorted(old - backed(item_id, old)):
            if cache.release(counter_key(item_id), marker_key(item_id, user_id)):
                log.warning('sale %s: the claim of user %s had no order nor task; its seat went back', item_id, user_id)
                returned += 1
    return returned


def presses_on(record: TaskRecord, item_id: int) -> bool:
    """Whether a create_order record is a press on this sale (its arguments: user, item)."""
    return bool(record.payload) and json.loads(record.payload)[0][1:2] == [item_id]


def open_sale_ids() -> list[int]:
    now = utcnow()
    return [row.id for row in SeckillItem.select(SeckillItem.id)
            .where((SeckillItem.starts_at <= now) & (SeckillItem.ends_at > now))]


def backed(item_id: int, users: set[int]) -> set[int]:
    """The users among `users` with a live order for the sale, or an order task not finished."""
    if not users:
        return set()
    holders = {order.user_id for order in Order.select(Order.user)
               .where((Order.item == item_id) & Order.live.is_null(False) & Order.user.in_(list(users)))}
    running = (TaskRecord.select(TaskRecord.user_id, TaskRecord.payload)
               .where((TaskRecord.name == 'create_order') & TaskRecord.user_id.in_(list(users))
                      & TaskRecord.state.in_(UNFINISHED)))
    waiting = {record.user_id for record in running if presses_on(record, item_id)}
    return holders | waiting


def release(item_id: int, user_id: int) -> None:
    """Give a claimed unit back to the sale (a cancelled order, a refused enqueue)."""
    cache.release(counter_key(item_id), marker_key(item_id, user_id))


# The order task's work -------------------------------------------------------------------------

# Its statements as SQL built once (sprig.db.prepared): a storm runs them for every claim, and
# Peewee took longer to build each (0.2-0.3 ms measured) than SQLite to run it.
ORDER_BY_TASK = prepared(lambda: Order.select().where(Order.task_id == ''))
SALE_BY_ID = prepared(lambda: SeckillItem.select().where(SeckillItem.id == 0))
TAKE_UNIT = prepared(lambda: SeckillItem.update(stock_left=SeckillItem.stock_left - SQL('1'))
                     .where((SeckillItem.id == 0) & (SeckillItem.stock_left > SQL('0'))))

def place_order(user_id: int, item_id: int, task_id: str, payment_timeout: int) -> dict:
    """Create the order for a claim, once per task id: the stock decrement and the insert commit
    together or not at all. Returns the outcome; the claim is settled to match it."""
    existing = first(Order, ORDER_BY_TASK(), task_id)
    if existing is not None:  # this task ran before (a re-run after its consumer died)
        return {'outcome': 'won', 'order_id': existing.id}
    try:
        with database.atomic():
            item = first(SeckillItem, SALE_BY_ID(), item_id)
            if item is None:
                raise SeckillItem.DoesNotExist(f'no sale {item_id}')
            taken = database.execute_sql(TAKE_UNIT(), (item_id,)).rowcount
            order = taken and Order.create(user=user_id, item=item_id, task_id=task_id, price=item.price,
                                           expires_at=utcnow() + datetime.timedelta(seconds=payment_timeout))
    except IntegrityError:
        again = first(Order, ORDER_BY_TASK(), task_id)
        if again is not None:  # a twin run of this task won the race
            return {'outcome': 'won', 'order_id': again.id}
        # The user already holds a live order for this sale: the seat goes back, the marker stays.
        cache.adjust(counter_key(item_id), 1)
        return {'outcome': 'already_bought'}
    if not order:
        # The counter was ahead of the database (the cache restarted): this claim took a seat
        # that was not there, so the counter now counts one less phantom; the marker goes.
        cache.delete(marker_key(item_id, user_id))
        return {'outcome': 'sold_out'}
    return {'outcome': 'won', 'order_id': order.id}


# Results ---------------------------------------------------------------------------------------

WON, LOST, QUEUED, RUNNING, FAILED = 100, 101, 102, 103, 104
LOST_MESSAGES = {'sold_out': 'sold out', 'already_bought': 'you already hold an order for this sale'}


def press_result(task_id: str, user_id: int, huey: 'SprigHuey') -> dict | None:
    """The poller's answer for one of user's presses, or None when user made no press `task_id`:
    from its order (the durable proof), else from its task's record, and for a press that lost,
    from what its task returned (Huey's result, kept until the record is pruned)."""
    record = records.find(huey, task_id)
    if record is None or record.name != 'create_order' or record.user_id != user_id:
        return None
    order = first(Order, ORDER_BY_TASK(), task_id)
    if order is not None:
        return {'code': WON, 'msg': 'you got it: pay within the time limit', 'order_id': order.id}
    if record.state in ('queued', 'scheduled', 'retrying'):
        return {'code': QUEUED, 'msg': 'queued'}
    if record.state == 'started':
        return {'code': RUNNING, 'msg': 'in progress'}
    outcome = huey.result(task_id, preserve=True) if record.state == 'succeeded' else None
    if isinstance(outcome, dict) and outcome.get('outcome') in LOST_MESSAGES:
        return {'code': LOST, 'msg': LOST_MESSAGES[outcome['outcome']]}
    return {'code': FAILED, 'msg': 'something went wrong with this order; please try again'}


# Admin ----------------------------------------------------------------------------------------

def open_sale(course_id: int, price: Decimal, stock_total: int, starts_at: datetime.datetime,
              ends_at: datetime.datetime, actor: User | None = None) -> SeckillItem:
    """A new flash sale (times naive UTC); the lists that show sales are dropped from the cache."""
    values = {'course': course_id, 'price': price, 'stock_total': stock_total, 'starts_at': starts_at,
              'ends_at': ends_at}
    with writing(stale(SeckillItem())):
        item = SeckillItem.create(stock_left=stock_total, **values)
        audit.record(actor, 'create', item, audit.diff(SeckillItem(), values))
    aside.drop(keys=[keys.sale(item.id)])  # a probe may have cached "no such sale"
    return item


def change_sale(item: SeckillItem, course_id: int, price: Decimal, stock_total: int,
                starts_at: datetime.datetime, ends_at: datetime.datetime, actor: User | None = None) -> bool:
    """Change a sale; a new stock_total moves stock_left and the shared counter by the
    difference. False, and nothing changed, when stock_total is below the units already sold."""
    change = stock_total - item.stock_total
    # The difference is taken from the row as it is when updated, not as it was read.
    left = SeckillItem.stock_left + stock_total - SeckillItem.stock_total
    values = {'course': course_id, 'price': price, 'stock_total': stock_total, 'starts_at': starts_at,
              'ends_at': ends_at}
    with writing(stale(item)):
        updated = (SeckillItem.update(stock_left=left, **values)
                   .where((SeckillItem.id == item.id) & (left >= 0)).execute())
        if updated:
            audit.record(actor, 'change', item, audit.diff(item, values))
    if updated and change:
        cache.adjust(counter_key(item.id), change)  # none yet: the next press counts
    return bool(updated)


def viewer(item_id: int, user_id: int) -> dict:
    """What the sale page shows this buyer of their own: their live order for the sale, or their
    press still in the queue (its task id, to follow it), or nothing."""
    order = (Order.select().where((Order.item == item_id) & (Order.user == user_id) & Order.live.is_null(False))
             .first())
    if order is not None:
        return {'order': order.public(), 'task_id': None}
    pending = (TaskRecord.select(TaskRecord.id, TaskRecord.payload)
               .where((TaskRecord.name == 'create_order') & (TaskRecord.user_id == user_id)
                      & TaskRecord.state.in_(UNFINISHED)).order_by(TaskRecord.created_at.desc()))
    task_id = next((record.id for record in pending if presses_on(record, item_id)), None)
    return {'order': None, 'task_id': task_id}
