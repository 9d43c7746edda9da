"""Tasks: the Huey instance built from settings, and every task.

Imported by the web app and by `huey_consumer tasks.huey`; it never imports the web app, so a
consumer starts without it. Settings are read once, here, at import; configure() rebinds the
queue, the database and the cache to other settings (the web app's, a test's).
"""
import logging
import os
import socket
import sys
import time
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from huey.storage import BlackHoleStorage
from peewee import DatabaseError

import banners
import cached
import seckill
import sms
from cache import CacheError, cache, init_cache
from engine import SprigConsumer, SprigHuey, seconds_ago
from models import ConsumerBeat, TaskRecord, Token, database, init_db, utcnow
from queues import QUEUE_ERRORS, storage_options
from settings import Settings, SettingsError, load_settings, scheme


def bind_queue(target: SprigHuey, settings: Settings) -> None:
    """Point target at the storage [queue] names, immediate (in-process) when the settings say so."""
    options = storage_options(settings.queue.url)
    target.name = settings.queue.name
    target.storage_class = options.pop('storage_class')
    target.storage_kwargs = options
    target.immediate = settings.queue.immediate
    target.storage = target.create_storage()
    target.shutdown_timeout = settings.queue.shutdown_timeout
    target.heartbeat_timeout = settings.queue.heartbeat_timeout
    target.max_retry_delay = settings.queue.max_retry_delay
    target.records = settings.queue.records
    target.timezone = zoneinfo.ZoneInfo(settings.app.timezone)


def configure(new: Settings) -> None:
    """Rebind the queue, the database and the cache to `new`."""
    global settings
    settings = new
    bind_queue(huey, new)
    init_db(new)
    init_cache(new)


log = logging.getLogger('sprig.tasks')

try:
    settings = load_settings()
except SettingsError as exc:
    # SystemExit, not an exception: huey_consumer would print a traceback for the latter.
    sys.exit(f'sprig: bad setting: {exc}')

if scheme(settings.cache.url) == 'memory' and Path(sys.argv[0]).name == 'huey_consumer':
    sys.exit('sprig: [cache] url: memory:// cannot be shared with a separate consumer; '
             'use sqlite:/// or redis://')

# A placeholder storage until configure() binds the real one. store_intermediate_errors=False:
# a task that fails once and then succeeds must not read as failed.
huey = SprigHuey(settings.queue.name, storage_class=BlackHoleStorage, store_intermediate_errors=False)
configure(settings)


class EmbeddedConsumer(SprigConsumer):
    """A consumer living in the web process: threads only, and the host keeps its signal handlers."""

    def _set_signal_handlers(self) -> None:
        # Huey's handlers only set a flag read by Consumer.run(), which an embedded consumer
        # never calls: with them, Ctrl-C would no longer stop the web server.
        pass


def start_embedded_consumer() -> EmbeddedConsumer:
    consumer = EmbeddedConsumer(huey, workers=settings.queue.workers, worker_type='thread',
                                initial_delay=0.05, max_delay=0.5, check_worker_health=False)
    consumer.start()
    return consumer


def stop_embedded_consumer(consumer: EmbeddedConsumer) -> None:
    """Stop as huey_consumer does: wait up to shutdown_timeout, then settle what still runs."""
    consumer.stop(graceful=True)
    huey.notify_interrupted_tasks()


@huey.post_execute()
def drop_broken_connection(task, value, exc) -> None:
    """A worker thread keeps its own connection from task to task (opened on first use); one
    that a database error may have broken is closed, so the next task opens a fresh one."""
    if isinstance(exc, DatabaseError) and not huey.immediate and not database.is_closed():
        database.manual_close()  # not back to the pool


@huey.task(retry_delay=2, retry_backoff=2, secret=('code',), idempotent=True)
def send_sms_code(mobile: str, code: str, scene: str) -> None:
    """Deliver a verification code; a failure is retried with growing delays, then recorded."""
    sms.create_backend(settings).send(mobile, code, scene)


def queue_sms_code(mobile: str, code: str, scene: str):
    """Enqueue send_sms_code with [sms] send_retries: Huey takes the count from the enqueuer."""
    return send_sms_code(mobile, code, scene, retries=settings.sms.send_retries)


@huey.every(3600, idempotent=True)
def prune_records() -> int:
    """Retention: drop task records (and their results) older than [queue] retention_hours,
    heartbeats of long-gone consumers, and expired login tokens."""
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
    return len(ids)


@huey.task(idempotent=True)
def ping(sent_at: float) -> dict:
    """A no-op that says who ran it: the operator's proof that a consumer is listening."""
    return {'sent_at': sent_at, 'ran_at': time.time(), 'host': socket.gethostname(),
            'pid': os.getpid()}


@huey.every(settings.banner.refresh_interval, idempotent=True)
def rebuild_banner_cache() -> int:
    """The safety net: rewrite the cached banner list from the database, so that a change made
    outside the app (plain SQL, another tool) shows within [banner] refresh_interval seconds."""
    return banners.rebuild(settings)


@huey.task(idempotent=True)
def drop_cached(keys: list[str], namespaces: list[str]) -> None:
    """The second delete after a write (see writing())."""
    cached.drop(keys, namespaces)


@contextmanager
def writing(keys: tuple[str, ...] = (), namespaces: tuple[str, ...] = ()) -> Iterator[None]:
    """A write that cached reads depend on: commit it, then delete what it changed from the
    cache, and delete it once more [cache] double_delete_delay ms later, for a reader that read
    the old rows during the write and stored them after the first delete. An outage of the cache
    or the queue does not undo the committed write: it is logged, and the TTL and the periodic
    rebuild catch up."""
    with database.atomic():
        yield
    try:
        cached.drop(keys, namespaces)
    except CacheError as exc:
        cache.outage.failed(exc)
    try:
        drop_cached.schedule((list(keys), list(namespaces)), delay=settings.cache.double_delete_delay / 1000)
    except QUEUE_ERRORS as exc:
        log.warning('could not schedule the second cache delete of %s %s: %s', keys, namespaces, exc)


def give_back_seat(user_id: int, item_id: int, **_) -> None:
    """A press whose task will never run (revoked, expired, lost): its claimed seat goes back."""
    seckill.release(item_id, user_id)


@huey.task(context=True, idempotent=True, retries=2, retry_delay=0.5, gone=give_back_seat)
def create_order(user_id: int, item_id: int, task=None) -> dict:
    """A flash-sale press that claimed a unit: create the order (once per task, so a re-run is
    harmless), and schedule its cancellation if it is still unpaid [seckill] payment_timeout
    seconds later. The outcome is the poller's answer (seckill.result_of)."""
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
    return seckill.cancel_if_unpaid(order_id)


@huey.every(60, idempotent=True)
def cancel_expired_orders() -> int:
    """The safety net of cancel_unpaid_order: an unpaid order past its time whose own
    cancellation never ran (the queue was down when it was to be scheduled) is cancelled here."""
    return seckill.cancel_expired()
