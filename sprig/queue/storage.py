"""Huey's SQLite and Redis storages, each able to keep a short-lived stub beside an enqueue.

A task's record row is written in batches (records.RecordWriter), a few milliseconds after its
enqueue; until it lands, the stub answers for it. The stub is written in the same step as the
enqueue (one SQLite transaction, one Redis round trip), so a task id the caller gets is never
unknown, and a refused enqueue leaves no stub behind.
"""
import contextlib
import sqlite3
import threading
import time

import redis
from huey.storage import RedisStorage, SqliteStorage

from sprig.redis_direct import BROKEN, Direct
from sprig.settings import scheme, sqlite_file

QUEUE_ERRORS = (redis.RedisError, sqlite3.Error)  # what Huey's storages raise
LOST_REPLY_ERRORS = BROKEN  # a reply may be lost with them

PURGE_EVERY = 1000  # SQLite enqueues between two purges of expired stubs
WAIT_SLICE = 1.0  # seconds of one BLPOP while waiting for a result: below the socket timeout


class Stubs:
    """The stub a thread is about to enqueue with (set by `stubbed`, taken by the next enqueue)."""

    def __init__(self):
        self.local = threading.local()

    @contextlib.contextmanager
    def stubbed(self, task_id: str, value: str, ttl: int):
        self.local.stub = (task_id, value, ttl)
        try:
            yield
        finally:
            self.local.stub = None

    def take(self) -> tuple[str, str, int] | None:
        stub, self.local.stub = getattr(self.local, 'stub', None), None
        return stub


class SqliteQueue(SqliteStorage):
    """Huey's SQLite storage with synchronous=NORMAL, like the app database (in WAL mode a crashed
    process loses nothing; a power cut may lose the last few enqueues; Huey's own `fsync` offers
    only FULL: an fsync per enqueue, 320 µs against 69 µs measured, or OFF), a connection per
    thread, plus stubs."""

    table_stub = ('create table if not exists stub (queue text not null, id text not null, '
                  'value text not null, expires real not null, primary key(queue, id))')
    ddl = [*SqliteStorage.ddl, table_stub]

    def __init__(self, *args, **kwargs):
        self.stubs = Stubs()
        self.enqueues = 0
        self.local = threading.local()
        super().__init__(*args, **kwargs)
        self.lock = contextlib.nullcontext()  # each thread has its own connection to guard

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute('pragma synchronous=normal')
        return conn

    # A connection per thread, not Huey's one connection behind one lock: in WAL mode readers
    # never wait, and writers wait for each other in SQLite (busy timeout), not in Python. The
    # embedded consumer's threads spent a third of a flash sale waiting on that lock. Huey's own
    # conn, db() and close() do the rest once its connection attribute is per thread.
    begin_sql = 'begin immediate'

    @property
    def _conn(self) -> sqlite3.Connection | None:
        return getattr(self.local, 'conn', None)

    @_conn.setter
    def _conn(self, conn: sqlite3.Connection | None) -> None:
        self.local.conn = conn

    def enqueue(self, data, priority=None):
        stub = self.stubs.take()
        with self.db(commit=True) as cursor:
            cursor.execute('insert into task (queue, data, priority) values (?, ?, ?)',
                           (self.name, self.to_blob(data), priority or 0))
            if stub is not None:
                task_id, value, ttl = stub
                cursor.execute('insert or replace into stub (queue, id, value, expires) values (?, ?, ?, ?)',
                               (self.name, task_id, value, time.time() + ttl))
                self.enqueues += 1
                if self.enqueues % PURGE_EVERY == 0:
                    cursor.execute('delete from stub where queue = ? and expires < ?', (self.name, time.time()))

    def read_stub(self, task_id: str) -> str | None:
        rows = self.sql('select value from stub where queue = ? and id = ? and expires > ?',
                        (self.name, task_id, time.time()), results=True)
        return rows[0][0] if rows else None


class RedisQueue(RedisStorage):
    """Huey's Redis storage plus stubs, each written with its enqueue by one script: atomic, one
    round trip, and cheaper than a MULTI pipeline (128 µs against 170 µs measured, LPUSH alone
    101, all through redis-py's client)."""

    ENQUEUE = "redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]); return redis.call('lpush', KEYS[2], ARGV[3])"

    def __init__(self, *args, **kwargs):
        self.stubs = Stubs()
        super().__init__(*args, **kwargs)
        # The commands every task costs go over direct connections (see redis_direct).
        self.direct = Direct(self.pool)
        self.enqueue_stubbed = self.direct.script(self.ENQUEUE)

    def stub_key(self, task_id: str) -> str:
        return f'sprig.stub.{self.name}.{task_id}'

    def enqueue(self, data, priority=None):
        stub = self.stubs.take()
        if priority:
            return super().enqueue(data, priority)  # which refuses it, in Huey's words
        if stub is None:  # a task enqueued again (due, retried), or records off
            return self.direct.command('LPUSH', self.queue_key, data)
        task_id, value, ttl = stub
        return self.enqueue_stubbed(keys=[self.stub_key(task_id), self.queue_key], args=[value, ttl, data])

    def dequeue(self):
        # Never sent twice: a BRPOP whose reply was lost took a task, and the engine must know
        # (SprigHuey.dequeue). Huey takes a timeout for an idle read, but an idle BRPOP ends
        # after read_timeout (1 s) with no reply, so the socket's timeout (5 s) means Redis stalled.
        reply = self.direct.command('BRPOP', self.queue_key, self.read_timeout, retry=False)
        return None if reply is None else reply[1]

    def peek_many(self, keys):
        """Huey's revoke check, once per task run."""
        values = self.direct.command('HMGET', self.result_key, *keys)
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def read_stub(self, task_id: str) -> str | None:
        value = self.conn.get(self.stub_key(task_id))
        return None if value is None else value.decode()

    def wait_result(self, key, timeout=None, backoff=1.15, max_delay=1.0):
        """Huey's blocking wait for a result (BLPOP on its notification key), in slices shorter
        than the socket timeout: one wait of its own length would be cut short by it, and a wait
        for ever (no timeout) would end after 5 s."""
        deadline = None if not timeout else time.monotonic() + timeout
        notify = self.notify_prefix + key
        while not self.has_data_for_key(key):
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if left <= 0:
                return False
            try:
                if self.conn.blpop(notify, timeout=left) is not None:
                    self.conn.delete(notify)
                    return True
            except (redis.ConnectionError, redis.TimeoutError):
                return False
        return True


def storage_options(url: str) -> dict:
    """Huey's storage class and its arguments for a resolved [queue] url."""
    if scheme(url) == 'sqlite':
        return {'storage_class': SqliteQueue, 'filename': str(sqlite_file(url))}
    # socket_timeout above Huey's 1 s blocking read, so an idle BRPOP is not an error.
    pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    # notify_result: a waiting reader blocks on Redis instead of polling for the result.
    return {'storage_class': RedisQueue, 'connection_pool': pool, 'notify_result': True}
