"""Cache backends: text values with TTLs, add-if-absent, atomic counters and claims, over a SQLite
file, Redis or a dict in memory. The Cache in front of them (store.py) adds prefixes and JSON."""
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis

from sprig.cache.near import Generation, LocalGeneration
from sprig.db.connection import use_wal
from sprig.redis_direct import Direct
from sprig.settings import sqlite_file

PURGE_EVERY = 1000  # writes between two sweeps of expired entries (SQLite, memory)


def expiry(ttl: float | None) -> float | None:
    return None if ttl is None else time.time() + ttl


class SqliteBackend:
    """A table in a SQLite file: shared by every process on the machine; one connection per thread."""

    errors = (sqlite3.Error,)

    def __init__(self, path: str):
        self.path = path
        self.generation = Generation(f'{path}.gen')  # beside the file: every process of the machine
        self.local = threading.local()
        self.writes = itertools.count(1)
        self.connections: list[sqlite3.Connection] = []
        self.guard = threading.Lock()
        use_wal(self.conn())  # once per file: asking on every connection fails under load
        self.conn().execute('CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, '
                            'value TEXT NOT NULL, expires REAL) WITHOUT ROWID')
        self.conn().execute('CREATE INDEX IF NOT EXISTS cache_expires ON cache (expires)')

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, 'conn', None)
        # A forked child must not use its parent's connection.
        if conn is None or self.local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                                   check_same_thread=False)
            conn.execute('PRAGMA synchronous=normal')
            self.local.conn, self.local.pid = conn, os.getpid()
            with self.guard:
                self.connections.append(conn)
        return conn

    def write(self, sql: str, params: tuple) -> sqlite3.Cursor:
        if next(self.writes) % PURGE_EVERY == 0:
            self.purge()
        return self.conn().execute(sql, params)

    def get(self, key: str) -> str | None:
        row = self.conn().execute('SELECT value FROM cache WHERE key = ? AND '
                                  '(expires IS NULL OR expires > ?)', (key, time.time())).fetchone()
        return row[0] if row else None

    def set(self, key: str, text: str, ttl: float | None) -> None:
        self.write('INSERT INTO cache (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key) '
                   'DO UPDATE SET value = excluded.value, expires = excluded.expires',
                   (key, text, expiry(ttl)))

    def add(self, key: str, text: str, ttl: float | None) -> bool:
        # The conflict branch only replaces an entry that has expired.
        cursor = self.write('INSERT INTO cache (key, value, expires) VALUES (?, ?, ?) '
                            'ON CONFLICT (key) DO UPDATE SET value = excluded.value, '
                            'expires = excluded.expires WHERE expires <= ?',
                            (key, text, expiry(ttl), time.time()))
        return cursor.rowcount == 1

    def delete(self, keys: tuple[str, ...]) -> int:
        marks = ','.join('?' * len(keys))
        return self.write(f'DELETE FROM cache WHERE key IN ({marks})', keys).rowcount

    def delete_if(self, key: str, text: str) -> bool:
        return self.write('DELETE FROM cache WHERE key = ? AND value = ?', (key, text)).rowcount == 1

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        # One statement, so concurrent writers cannot lose an update; an expired entry restarts.
        row = self.write(
            'INSERT INTO cache (key, value, expires) VALUES (:key, :delta, :expires) '
            'ON CONFLICT (key) DO UPDATE SET '
            'value = CASE WHEN expires <= :now THEN :delta ELSE CAST(value AS INTEGER) + :delta END, '
            'expires = CASE WHEN expires <= :now THEN :expires ELSE expires END '
            'RETURNING CAST(value AS INTEGER)',
            {'key': key, 'delta': delta, 'expires': expiry(ttl), 'now': time.time()}).fetchone()
        return row[0]

    def alive(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute('SELECT value FROM cache WHERE key = ? AND (expires IS NULL OR expires > ?)',
                           (key, time.time())).fetchone()
        return row[0] if row else None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock first, so a read-then-write cannot be overtaken."""
        conn = self.conn()
        conn.execute('BEGIN IMMEDIATE')
        try:
            yield conn
        except BaseException:
            conn.execute('ROLLBACK')
            raise
        conn.execute('COMMIT')

    def claim(self, counter: str, marker: str, ttl: float, mark: str) -> str:
        # Most presses of a storm are refused: say so from a read, which the write lock never
        # blocks (WAL). Only a press that may win queues for the lock, and checks again there.
        refusal = self.refusal(self.conn(), counter, marker)
        if refusal:
            return refusal
        with self.transaction() as conn:
            return self.refusal(conn, counter, marker) or self.take(conn, counter, marker, ttl, mark)

    def refusal(self, conn: sqlite3.Connection, counter: str, marker: str) -> str | None:
        if self.alive(conn, marker) is not None:
            return 'held'
        stock = self.alive(conn, counter)
        if stock is None or int(stock) <= 0:
            return 'unknown' if stock is None else 'empty'
        return None

    def take(self, conn: sqlite3.Connection, counter: str, marker: str, ttl: float, mark: str) -> str:
        conn.execute('UPDATE cache SET value = CAST(value AS INTEGER) - 1 WHERE key = ?', (counter,))
        conn.execute('INSERT OR REPLACE INTO cache (key, value, expires) VALUES (?, ?, ?)', (marker, mark, expiry(ttl)))
        return 'claimed'

    def adjust(self, key: str, delta: int) -> bool:
        return self.write('UPDATE cache SET value = CAST(value AS INTEGER) + ? WHERE key = ? AND '
                          '(expires IS NULL OR expires > ?)', (delta, key, time.time())).rowcount == 1

    def release(self, counter: str, marker: str) -> bool:
        with self.transaction() as conn:
            if conn.execute('DELETE FROM cache WHERE key = ?', (marker,)).rowcount == 0:
                return False
            conn.execute('UPDATE cache SET value = CAST(value AS INTEGER) + 1 WHERE key = ?', (counter,))
            return True

    def scan(self, prefix: str) -> dict[str, str]:
        # A range of the primary key: every key that starts with prefix, read from its index.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.conn().execute('SELECT key, value FROM cache WHERE key >= ? AND key < ? AND '
                                   '(expires IS NULL OR expires > ?)', (prefix, end, time.time()))
        return dict(rows.fetchall())

    def purge(self) -> int:
        return self.conn().execute('DELETE FROM cache WHERE expires <= ?', (time.time(),)).rowcount

    def ping(self) -> None:
        self.conn().execute('SELECT count(*) FROM cache WHERE key = ?', ('',)).fetchone()

    def close(self) -> None:
        with self.guard:
            for conn in self.connections:
                conn.close()
            self.connections.clear()
        self.local = threading.local()
        self.generation.close()


class RedisBackend:
    """Redis: shared by every process on every machine; Redis expires entries itself."""

    errors = (redis.RedisError,)
    # Compare-and-delete, so that a lock is only released by the holder that took it.
    DELETE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    # claim(): one step, so no two callers can take the last unit or both pass the marker check.
    CLAIM = """
        if redis.call('exists', KEYS[2]) == 1 then return 'held' end
        local stock = redis.call('get', KEYS[1])
        if not stock then return 'unknown' end
        if tonumber(stock) <= 0 then return 'empty' end
        redis.call('decr', KEYS[1])
        redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[1])
        return 'claimed'"""
    ADJUST = "if redis.call('exists', KEYS[1]) == 1 then redis.call('incrby', KEYS[1], ARGV[1]) return 1 end return 0"
    RELEASE = """
        if redis.call('del', KEYS[2]) == 0 then return 0 end
        if redis.call('exists', KEYS[1]) == 1 then redis.call('incr', KEYS[1]) end
        return 1"""

    def __init__(self, url: str):
        # Short timeouts: an unreachable cache must fail fast, so readers can fall back.
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2,
                                           socket_connect_timeout=1)
        self.delete_script = self.client.register_script(self.DELETE_IF)
        self.claim_script = Direct(self.client.connection_pool).script(self.CLAIM)  # every press runs it
        self.release_script = self.client.register_script(self.RELEASE)
        self.adjust_script = self.client.register_script(self.ADJUST)

    @staticmethod
    def px(ttl: float | None) -> int | None:
        return None if ttl is None else max(1, int(ttl * 1000))

    def get(self, key: str) -> str | None:
        return self.client.get(key)

    def set(self, key: str, text: str, ttl: float | None) -> None:
        self.client.set(key, text, px=self.px(ttl))

    def add(self, key: str, text: str, ttl: float | None) -> bool:
        return bool(self.client.set(key, text, px=self.px(ttl), nx=True))

    def delete(self, keys: tuple[str, ...]) -> int:
        return self.client.delete(*keys)

    def delete_if(self, key: str, text: str) -> bool:
        return bool(self.delete_script(keys=[key], args=[text]))

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        if ttl is None:
            return self.client.incrby(key, delta)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, 0, px=self.px(ttl), nx=True)  # the TTL starts with the counter
        pipe.incrby(key, delta)
        return pipe.execute()[1]

    def claim(self, counter: str, marker: str, ttl: float, mark: str) -> str:
        return self.claim_script(keys=[counter, marker], args=[self.px(ttl), mark])

    def scan(self, prefix: str) -> dict[str, str]:
        pattern = ''.join(f'\\{char}' if char in '*?[]\\' else char for char in prefix) + '*'
        keys = list(self.client.scan_iter(match=pattern, count=1000))
        values = self.client.mget(keys) if keys else []
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def release(self, counter: str, marker: str) -> bool:
        return bool(self.release_script(keys=[counter, marker]))

    def adjust(self, key: str, delta: int) -> bool:
        return bool(self.adjust_script(keys=[key], args=[delta]))

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()


class MemoryBackend:
    """A dict in this process: for a single process and for tests."""

    errors = ()

    def __init__(self):
        self.items: dict[str, tuple[str, float | None]] = {}
        self.generation = LocalGeneration()
        self.guard = threading.Lock()
        self.writes = itertools.count(1)

    def live(self, key: str) -> str | None:
        text, expires = self.items.get(key, (None, None))
        if expires is not None and expires <= time.time():
            return None
        return text

    def store(self, key: str, text: str, ttl: float | None) -> None:
        if next(self.writes) % PURGE_EVERY == 0:
            self.purge()
        self.items[key] = (text, expiry(ttl))

    def get(self, key: str) -> str | None:
        with self.guard:
            return self.live(key)

    def set(self, key: str, text: str, ttl: float | None) -> None:
        with self.guard:
            self.store(key, text, ttl)

    def add(self, key: str, text: str, ttl: float | None) -> bool:
        with self.guard:
            if self.live(key) is not None:
                return False
            self.store(key, text, ttl)
            return True

    def delete(self, keys: tuple[str, ...]) -> int:
        with self.guard:
            return sum(self.items.pop(key, None) is not None for key in keys)

    def delete_if(self, key: str, text: str) -> bool:
        with self.guard:
            if self.live(key) != text:
                return False
            del self.items[key]
            return True

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        with self.guard:
            current = self.live(key)
            if current is None:
                self.store(key, str(delta), ttl)
                return delta
            value = int(current) + delta
            self.items[key] = (str(value), self.items[key][1])
            return value

    def claim(self, counter: str, marker: str, ttl: float, mark: str) -> str:
        with self.guard:
            if self.live(marker) is not None:
                return 'held'
            stock = self.live(counter)
            if stock is None or int(stock) <= 0:
                return 'unknown' if stock is None else 'empty'
            self.items[counter] = (str(int(stock) - 1), self.items[counter][1])
            self.store(marker, mark, ttl)
            return 'claimed'

    def adjust(self, key: str, delta: int) -> bool:
        with self.guard:
            if self.live(key) is None:
                return False
            self.items[key] = (str(int(self.items[key][0]) + delta), self.items[key][1])
            return True

    def release(self, counter: str, marker: str) -> bool:
        with self.guard:
            if self.items.pop(marker, None) is None:
                return False
            if self.live(counter) is not None:
                self.items[counter] = (str(int(self.items[counter][0]) + 1), self.items[counter][1])
            return True

    def scan(self, prefix: str) -> dict[str, str]:
        with self.guard:
            return {key: text for key in list(self.items) if key.startswith(prefix)
                    and (text := self.live(key)) is not None}

    def purge(self) -> int:
        now = time.time()
        dead = [k for k, (_, expires) in self.items.items() if expires is not None and expires <= now]
        for key in dead:
            del self.items[key]
        return len(dead)

    def ping(self) -> None:
        pass

    def close(self) -> None:
        self.items.clear()


def open_backend(url: str) -> SqliteBackend | RedisBackend | MemoryBackend:
    """The backend a resolved [cache] url names (see settings.resolve_url)."""
    kind = urlsplit(url).scheme
    if kind == 'sqlite':
        return SqliteBackend(str(sqlite_file(url)))
    if kind in ('redis', 'rediss'):
        return RedisBackend(url)
    if kind == 'memory':
        return MemoryBackend()
    raise ValueError(f'no cache backend for {url!r}')
