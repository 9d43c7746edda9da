"""Binding the database proxy of models.py to [database] url: pooled connections, and for SQLite
WAL, a busy timeout and foreign keys."""
import sqlite3
import time

from playhouse.db_url import connect

from models import database
from sprig.settings import Settings, scheme, sqlite_file

# Set on every new connection. WAL is a property of the file, set once by create_tables():
# asking for it on each connection can fail with "database is locked" under write load.
SQLITE_PRAGMAS = {
    'busy_timeout': 10_000,
    'foreign_keys': 1,
    'synchronous': 'normal',
}

# Connections are pooled: a request or a task takes one and gives it back (database.close()),
# instead of paying for a new connection and its pragmas each time (a fifth of a seckill
# press's CPU before). Each thread holds at most one, so the pool is never larger than the
# number of threads; connections idle for STALE seconds are closed.
POOL = {'max_connections': None, 'stale_timeout': 300}


def pooled(url: str) -> str:
    kind, rest = url.split(':', 1)
    return url if kind.endswith('+pool') else f'{kind}+pool:{rest}'


def init_db(settings: Settings) -> None:
    """Bind `database` to [database] url; SQLite gets WAL, a busy timeout and foreign keys."""
    url = settings.database.url
    if scheme(url) == 'sqlite':
        sqlite_file(url)
        # IMMEDIATE: a transaction that reads then writes would otherwise fail with
        # "database is locked" under concurrency instead of waiting for the lock.
        # check_same_thread: a pooled connection goes back to whichever thread asks next.
        db = connect(pooled(url), pragmas=SQLITE_PRAGMAS, lock_type='IMMEDIATE', check_same_thread=False, **POOL)
    else:
        db = connect(pooled(url), **POOL)
    if database.obj is not None:
        database.close()
        database.obj.close_idle()  # not close_all(): that closes connections other threads are using
    database.initialize(db)


def use_wal(conn: sqlite3.Connection, timeout: float = 10) -> None:
    """Switch a SQLite file to WAL once (the database's, the SQLite cache's). The switch needs the
    file to itself and SQLite does not wait for that (no busy handler): two processes starting on
    a fresh file failed 13 times in 30 with "database is locked". So it is retried, like Huey's own
    switch."""
    deadline = time.monotonic() + timeout
    while conn.execute('PRAGMA journal_mode').fetchone()[0] != 'wal':
        try:
            conn.execute('PRAGMA journal_mode = wal')
        except sqlite3.OperationalError as exc:
            if 'locked' not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
