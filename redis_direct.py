"""The hottest Redis commands, sent over a connection each thread keeps, past redis-py's client.

redis-py's client spends about 45 µs of CPU around every command (pool checkout and return,
the retry wrapper, its observability hooks), as much as the exchange itself takes (40 µs,
measured). A press and an enqueue are one script each, so they go this way; everything else
keeps the client.
"""
import hashlib
import os
import threading

import redis
from redis.exceptions import NoScriptError

RETRIED = (redis.ConnectionError, redis.TimeoutError)


class Direct:
    """Commands over a connection per thread, taken once from `pool` (so closing the pool
    closes it too)."""

    def __init__(self, pool: redis.ConnectionPool):
        self.pool = pool
        self.local = threading.local()

    def connection(self) -> redis.Connection:
        conn = getattr(self.local, 'conn', None)
        if conn is None or self.local.pid != os.getpid():  # none yet, or the parent's in a forked child
            conn = self.local.conn = self.pool.get_connection()
            self.local.pid = os.getpid()
        return conn

    def command(self, *args, retry: bool = True):
        """One command's reply. Like redis-py's client, a broken connection is reopened and the
        command sent once more (a Redis that restarted answers the second time), unless `retry`
        is false: the caller must hear that a reply may have been lost."""
        try:
            return self.exchange(args)
        except RETRIED:
            if not retry:
                raise
            return self.exchange(args)

    def exchange(self, args: tuple):
        conn = self.connection()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except RETRIED:
            conn.disconnect()  # the next command connects again
            raise

    def script(self, text: str) -> 'Script':
        return Script(self, text)


class Script:
    """A Lua script run by its digest, sent whole only when Redis does not know it yet."""

    def __init__(self, direct: Direct, text: str):
        self.direct, self.text = direct, text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: list, args: list):
        try:
            return self.direct.command('EVALSHA', self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a Redis restarted or flushed: EVAL caches it again
            return self.direct.command('EVAL', self.text, len(keys), *keys, *args)
