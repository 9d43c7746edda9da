"""Tasks: the Huey instance built from settings, and every task.

Imported by the web app and by `huey_consumer tasks.huey`; it never imports the web app, so a
consumer starts without it. Settings are read once, here, at import; configure() rebinds the
queue, the database and the cache to other settings (the web app's, a test's). A task of your
own goes in a module that imports `huey` from here; the consumer must import that module too
(README: "Tasks of your own").
"""
import logging
import os
import socket
import sys
import time
from pathlib import Path

from peewee import DatabaseError

from models import ConsumerBeat, TaskRecord, Token, database, utcnow
from sprig.cache import aside
from sprig.cache.invalidation import second_delete
from sprig.cache.store import cache, init_cache
from sprig.db.connection import init_db
from sprig.metrics import metrics
from sprig.queue.engine import SprigHuey
from sprig.queue.records import seconds_ago
from sprig.queue.storage import QUEUE_ERRORS
from sprig.settings import Settings, SettingsError, load_settings, scheme
from sprig.shop import audit, banners, orders, seckill, sms

log = logging.getLogger('sprig.tasks')

try:
    settings = load_settings()
except SettingsError as exc:
    # SystemExit, not an exception: huey_consumer would print a traceback for the latter.
    sys.exit(f'sprig: bad setting: {exc}')

if scheme(settings.cache.url) == 'memory' and Path(sys.argv[0]).name == 'huey_consumer':
    sys.exit('sprig: [cache] url: memory:// cannot be shared with a separate consumer; '
             'use sqlite:/// or redis://')

huey = SprigHuey(settings)


def configure(new: Settings) -> None:
    """Rebind the queue, the database and the cache to `new` (the web app's, a test's)."""
    global settings
    settings = new
    huey.configure(new)
    bind_stores(new)


def bind_stores(settings: Settings) -> None:
    """The database, the cache, the metrics, and the queue's part in invalidation (the second delete)."""
    init_db(settings)
    init_cache(settings)
    metrics.configure(settings)
    second_delete.bind(drop_cached, settings.cache.double_delete_delay / 1000)


@huey.post_execute()
def drop_broken_connection(task, value, exc) -> None:
    """A worker thread keeps its own connection from task to task (opened on first use); one
    that a database error may have broken is closed, so the next task opens a fresh one."""
    if isinstance(exc, DatabaseError) and not huey.immediate and not database.is_closed():
        database.manual_close()  # not back to the pool


@huey.task(context=True, retry_delay=2, retry_backoff=2, secret=('code',), idempotent=True)
def send_sms_code(mobile: str, code: str, scene: str, task=None) -> None:
    """Deliver a verification code, given sealed (sms.seal); a failure is retried with growing
    delays, then recorded, and the number may ask for a new code at once (none arrived)."""
    try:
        sms.create_backend(settings).send(mobile, sms.unseal(code, settings.app.secret_key), scene)
    except Exception:
        if not task.retries:
            sms.Codes(cache, settings).allow_resend(mobile)
        raise


def queue_sms_code(mobile: str, code: str, scene: str):
    """Enqueue send_sms_code with the code sealed, so that whoever reads the queue (its SQLite
    file, Redis, an AOF file) cannot sign in with it, and with [sms] send_retries: Huey takes the
    count from the enqueuer."""
    sealed = sms.seal(code, settings.app.secret_key)
    return send_sms_code(mobile, sealed, scene, retries=settings.sms.send_retries)


@huey.every(3600, idempotent=True)
def prune_records() -> int:
    """Retention: drop task records (and their results) older than [queue] retention_hours,
    heartbeats of long-gone consumers, expired login tokens, and audit entries older than
    [admin] audit_retention_days."""
    old = TaskRecord.select(TaskRecord.id).where(
        (TaskRecord.created_at < seconds_ago(settings.queue.retention_hours * 3600))
        & TaskRecord.finished_at.is_null(False))
    ids = [record.id for record in old]
    for task_id in ids:
        huey.storage.delete_data(task_id)
    for start in range(0, len(ids), 500):
        TaskRecord.delete().where(TaskRecord.id.in_(ids[start:start + 500])).execute()
    ConsumerBeat.delete().where(ConsumerBeat.beat_at < seconds_ago(settings.queue.retention_hours * 3600)).execute()
    Token.delete().where(Token.expires < utcnow()).execute()
    audit.prune(settings.admin.audit_retention_days)
    return len(ids)


@huey.task(idempotent=True)
def ping(sent_at: float) -> dict:
    """A no-op that says who ran it: the operator's proof that a consumer is listening."""
    return {'sent_at': sent_at, 'ran_at': time.time(), 'host': socket.gethostname(),
            'pid': os.getpid()}


@huey.every(lambda settings: settings.banner.refresh_interval, idempotent=True)
def rebuild_banner_cache() -> int:
    """The safety net: rewrite the cached banner list from the database, so that a change made
    outside the app (plain SQL, another tool) shows within [banner] refresh_interval seconds."""
    return banners.rebuild(settings)


@huey.task(idempotent=True)
def drop_cached(keys: list[str], namespaces: list[str]) -> None:
    """The second delete after a write (sprig.cache.invalidation)."""
    aside.drop(keys, namespaces)


def give_back_seat(user_id: int, item_id: int, **_) -> None:
    """A press whose task will never run (revoked, expired, lost): its claimed seat goes back."""
    seckill.release(item_id, user_id)


@huey.task(context=True, idempotent=True, retries=2, retry_delay=0.5, gone=give_back_seat)
def create_order(user_id: int, item_id: int, task=None) -> dict:
    """A flash-sale press that claimed a unit: create the order (once per task, so a re-run is
    harmless), and schedule its cancellation if it is still unpaid [seckill] payment_timeout
    seconds later. The outcome is the poller's answer (seckill.press_result)."""
    try:
        outcome = seckill.place_order(user_id, item_id, task.id, settings.seckill.payment_timeout)
    except Exception:
        if not task.retries:  # the last try: the unit goes back on sale
            seckill.release(item_id, user_id)
        raise
    if outcome['outcome'] == 'won':
        try:
            cancel_unpaid_order.schedule((outcome['order_id'],), delay=settings.seckill.payment_timeout)
        except QUEUE_ERRORS as exc:  # the order stands: cancel_expired_orders cancels it when due
            log.warning('could not schedule the cancellation of order %s: %s', outcome['order_id'], exc)
    return outcome


@huey.task(idempotent=True)
def cancel_unpaid_order(order_id: int) -> bool:
    """Cancel the order if it is still unpaid; its unit goes back to the sale."""
    return orders.cancel_if_unpaid(order_id)


@huey.leader_sweep(10)
def reconcile_claims() -> None:
    """Seats claimed by presses that no order and no order task backs (a web process died between
    the claim and the enqueue) go back on sale within seconds. Judged from the task records, so
    only while they are kept."""
    if settings.queue.records:
        seckill.reconcile_claims()


@huey.every(60, idempotent=True)
def cancel_expired_orders() -> int:
    """The safety net of cancel_unpaid_order: an unpaid order past its time whose own
    cancellation never ran (the queue was down when it was to be scheduled) is cancelled here."""
    return orders.cancel_expired()


bind_stores(settings)
