"""The seckill routes of API.md: sales, the press, its result, orders and payment, admin sales."""
import datetime
from decimal import Decimal
from typing import Annotated

from bottle import Bottle, request
from pydantic import AwareDatetime, Field, model_validator

import cached
import courses
import seckill
import tasks
from api import ApiError, Change, Doc, Input, ok, parse_body, refuse, validated
from auth import Auth
from cache import cache
from engine import stub
from models import Course, Order, SeckillItem, TaskRecord, first, prepared, utcnow
from settings import Settings

Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
# The poller's read of a task record, built once: pages poll it every few seconds.
RECORD_BY_ID = prepared(lambda: TaskRecord.select().where(TaskRecord.id == ''))
Price = Annotated[Decimal, Field(ge=0, le=10_000_000, max_digits=10, decimal_places=2)]
Stock = Annotated[int, Field(ge=0, le=10_000_000)]


class Press(Input):
    item_id: Id


class NewSale(Input):
    course_id: Id
    price: Price
    stock_total: Stock
    starts_at: AwareDatetime  # ISO 8601 with an offset: a time without one is ambiguous
    ends_at: AwareDatetime

    @model_validator(mode='after')
    def ends_after_start(self) -> 'NewSale':
        if self.ends_at <= self.starts_at:
            raise ValueError('ends_at must come after starts_at')
        return self


class ResultQuery(Input):
    task_id: Annotated[str, Field(min_length=1, max_length=64)]


class SaleChange(Change):
    """Only the fields given change; the sale is then validated whole (NewSale)."""

    course_id: Id = None
    price: Price = None
    stock_total: Stock = None
    starts_at: AwareDatetime = None
    ends_at: AwareDatetime = None


def naive_utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def check_course(course_id: int) -> None:
    if not Course.select().where((Course.id == course_id) & ~Course.is_delete).exists():
        raise ApiError(400, 'invalid input: course_id', errors={'course_id': f'no such course: {course_id}'})


def writing_sale(item_id: int | None = None):
    """tasks.writing() for a sale: its cached description, the list, and the course pages that
    link to it are dropped after the commit, and again a moment later."""
    keys = (seckill.SALES_KEY,) if item_id is None else (seckill.SALES_KEY, seckill.sale_key(item_id))
    return tasks.writing(keys=keys, namespaces=(courses.NAMESPACE,))


def install_seckill_api(app: Bottle, settings: Settings, auth: Auth) -> None:
    """Mount /api/v1/seckill..., /api/v1/orders... and /api/v1/admin/seckill/items..."""
    limit = settings.app.max_body_kb * 1024

    @app.get('/api/v1/seckill/items', doc=Doc('Flash sales with live stock and state'))
    def list_sales() -> dict:
        now = utcnow()
        return ok(result=[seckill.with_stock(sale, now) for sale in seckill.sales(settings)])

    @app.get('/api/v1/seckill/items/<item_id:int>', doc=Doc('One flash sale', statuses=(404,)))
    def one_sale(item_id: int) -> dict:
        sale = seckill.sale(item_id, settings)
        if sale is None:
            raise ApiError(404, f'no sale {item_id}')
        return ok(result=seckill.with_stock(sale, utcnow()))

    @app.post('/api/v1/seckill', doc=Doc('Press: 202 with a task id, or 101 sold out / already holding one',
                                         auth='user', body=Press, statuses=(202, 404)))
    def press() -> dict:
        user = auth.require_user()
        body = parse_body(Press, limit)
        sale = seckill.sale(body.item_id, settings)
        if sale is None:
            raise ApiError(404, f'no sale {body.item_id}')
        now = utcnow()
        if now < seckill.parse(sale['starts_at']):
            raise ApiError(400, 'the sale has not started yet')
        if now >= seckill.parse(sale['ends_at']):
            raise ApiError(400, 'the sale has ended')
        taken = seckill.claim(sale, user, settings)
        if taken == 'held':
            return refuse('you already hold an order for this sale')
        if taken == 'empty':
            return refuse('sold out')
        try:
            result = tasks.create_order(user.id, sale['id'])
        except Exception:
            seckill.release(sale['id'], user.id)  # it never reached the queue: the unit goes back
            raise
        return ok('queued', status=202, task_id=result.id)

    @app.get('/api/v1/seckill/result', doc=Doc("A press's outcome: 100 won, 101 lost, 102 queued, 103 running, "
                                               '104 error', auth='user', query=ResultQuery, statuses=(404,)))
    def result() -> dict:
        user = auth.require_user()
        task_id = validated(ResultQuery, {'task_id': request.query.getunicode('task_id')}).task_id
        record = first(TaskRecord, RECORD_BY_ID(), task_id) or stub(tasks.huey, task_id)
        if record is None or record.name != 'create_order' or record.user_id != user.id:
            raise ApiError(404, f'no seckill submission {task_id}')
        answer = seckill.result_of(record, first(Order, seckill.ORDER_BY_TASK(), task_id))
        return {**answer, 'task_id': task_id}

    @app.get('/api/v1/orders', doc=Doc('The signed-in user\'s orders', auth='user'))
    def my_orders() -> dict:
        user = auth.require_user()
        orders = Order.select().where(Order.user == user).order_by(Order.created_at.desc(), Order.id.desc())
        return ok(result=[order.public() for order in orders])

    @app.post('/api/v1/orders/<order_id:int>/pay', doc=Doc('Pay an order (simulated)', auth='user',
                                                                    statuses=(400, 404)))
    def pay(order_id: int) -> dict:
        user = auth.require_user()
        order = Order.get_or_none((Order.id == order_id) & (Order.user == user))
        if order is None:
            raise ApiError(404, f'no order {order_id}')
        refusal = seckill.pay(order)
        if refusal:
            raise ApiError(400, refusal)
        return ok('paid', result=Order.get_by_id(order_id).public())

    @app.post('/api/v1/admin/seckill/items', doc=Doc('Open a flash sale', auth='admin', body=NewSale, statuses=(201,)))
    def create_sale() -> dict:
        auth.require_admin()
        body = parse_body(NewSale, limit)
        check_course(body.course_id)
        with writing_sale():
            item = seckill.new_sale(body.course_id, body.price, body.stock_total, naive_utc(body.starts_at),
                                    naive_utc(body.ends_at))
        cached.drop(keys=[seckill.sale_key(item.id)])  # a probe may have cached "no such sale"
        return ok('created', status=201, result=seckill.with_stock(seckill.sale(item.id, settings), utcnow()))

    @app.patch('/api/v1/admin/seckill/items/<item_id:int>',
               doc=Doc('Change a flash sale', auth='admin', body=SaleChange, statuses=(404,)))
    def change_sale(item_id: int) -> dict:
        """Any of the creation's fields; a new stock_total moves stock_left and the shared counter
        by the difference."""
        auth.require_admin()
        item = SeckillItem.get_or_none(SeckillItem.id == item_id)
        if item is None:
            raise ApiError(404, f'no sale {item_id}')
        given = parse_body(SaleChange, limit).model_dump(exclude_unset=True)
        stored = {'course_id': item.course_id, 'price': item.price, 'stock_total': item.stock_total,
                  'starts_at': item.starts_at.replace(tzinfo=datetime.UTC),
                  'ends_at': item.ends_at.replace(tzinfo=datetime.UTC)}
        sale = validated(NewSale, stored | given)
        check_course(sale.course_id)
        change = sale.stock_total - item.stock_total
        # The difference is taken from the row as it is when updated, not as it was read.
        left = SeckillItem.stock_left + sale.stock_total - SeckillItem.stock_total
        with writing_sale(item_id):
            updated = (SeckillItem.update(course=sale.course_id, price=sale.price, stock_total=sale.stock_total,
                                          starts_at=naive_utc(sale.starts_at), ends_at=naive_utc(sale.ends_at),
                                          stock_left=left)
                       .where((SeckillItem.id == item_id) & (left >= 0)).execute())
        if not updated:
            raise ApiError(400, 'stock_total is below the units already sold',
                           errors={'stock_total': f'at least {item.stock_total - item.stock_left} were sold'})
        if change:
            cache.adjust(seckill.counter_key(item_id), change)  # none yet: the next press counts
        return ok(result=seckill.with_stock(seckill.sale(item_id, settings), utcnow()))

