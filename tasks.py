"""Tasks: the Huey instance built from settings, and every task.

Imported by the web app and by `huey_consumer tasks.huey`; it never imports the web app, so a
consumer starts without it. Settings are read once, here, at import; configure() rebinds the
queue, the database and the cache to other settings (the web app's, a test's).
"""
import os
import socket
import sys
import time
from pathlib import Path

import redis
from huey import Huey
from huey.consumer import Consumer
from huey.storage import RedisStorage, SqliteStorage

import sms
from cache import init_cache
from models import database, init_db
from settings import Settings, SettingsError, load_settings, scheme, sqlite_file


def storage_options(url: str) -> dict:
    """Huey's storage class and its arguments for a resolved [queue] url."""
    if scheme(url) == 'sqlite':
        return {'storage_class': SqliteStorage, 'filename': str(sqlite_file(url))}
    # socket_timeout above Huey's 1 s blocking read, so an idle BRPOP is not an error.
    pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    # notify_result: a waiting reader blocks on Redis instead of polling for the result.
    return {'storage_class': RedisStorage, 'connection_pool': pool, 'notify_result': True}


def bind_queue(target: Huey, settings: Settings) -> None:
    """Point target at the storage [queue] names, immediate (in-process) when the settings say so."""
    options = storage_options(settings.queue.url)
    target.name = settings.queue.name
    target.storage_class = options.pop('storage_class')
    target.storage_kwargs = options
    target.immediate = settings.queue.immediate
    target.storage = target.create_storage()


def configure(new: Settings) -> None:
    """Rebind the queue, the database and the cache to `new`."""
    global settings
    settings = new
    bind_queue(huey, new)
    init_db(new)
    init_cache(new)


try:
    settings = load_settings()
except SettingsError as exc:
    # SystemExit, not an exception: huey_consumer would print a traceback for the latter.
    sys.exit(f'sprig: bad setting: {exc}')

if scheme(settings.cache.url) == 'memory' and Path(sys.argv[0]).name == 'huey_consumer':
    sys.exit('sprig: [cache] url: memory:// cannot be shared with a separate consumer; '
             'use sqlite:/// or redis://')

# store_intermediate_errors=False: a task that fails once and then succeeds must not read as failed.
huey = Huey(settings.queue.name, immediate=settings.queue.immediate, store_intermediate_errors=False,
            **storage_options(settings.queue.url))
init_db(settings)
init_cache(settings)


class EmbeddedConsumer(Consumer):
    """A consumer living in the web process: threads only, and the host keeps its signal handlers."""

    def _set_signal_handlers(self) -> None:
        # Huey's handlers only set a flag read by Consumer.run(), which an embedded consumer
        # never calls: with them, Ctrl-C would no longer stop the web server.
        pass


def start_embedded_consumer() -> EmbeddedConsumer:
    consumer = EmbeddedConsumer(huey, workers=settings.queue.workers, worker_type='thread',
                                initial_delay=0.05, max_delay=0.5, check_worker_health=False,
                                shutdown_timeout=settings.queue.shutdown_timeout)
    consumer.start()
    return consumer


@huey.post_execute()
def close_connection(task, value, exc) -> None:
    """A task opens a connection on its first query (autoconnect); close it after the task, as
    requests do. In immediate mode the task ran inside its caller, who still needs it."""
    if not huey.immediate and not database.is_closed():
        database.close()


@huey.task(retry_delay=2, retry_backoff=2)
def send_sms_code(mobile: str, code: str, scene: str) -> None:
    """Deliver a verification code; a failure is retried with growing delays, then recorded."""
    sms.create_backend(settings).send(mobile, code, scene)


def queue_sms_code(mobile: str, code: str, scene: str):
    """Enqueue send_sms_code with [sms] send_retries: Huey takes the count from the enqueuer."""
    return send_sms_code(mobile, code, scene, retries=settings.sms.send_retries)


@huey.task()
def ping(sent_at: float) -> dict:
    """A no-op that says who ran it: the operator's proof that a consumer is listening."""
    return {'sent_at': sent_at, 'ran_at': time.time(), 'host': socket.gethostname(),
            'pid': os.getpid()}
