"""The hottest Redis commands, sent over a connection each thread keeps, past redis-py's client.

redis-py's client spends about 45 µs of CPU around every command (pool checkout and return,
the retry wrapper, its observability hooks), as much as the exchange itself takes (40 µs,
measured). The commands every task and every press cost go this way; everything else keeps
the client.
"""
import hashlib
import os
import threading
import weakref

import redis
from redis.exceptions import NoScriptError

BROKEN = (redis.ConnectionError, redis.TimeoutError)  # the connection broke: a reply may be lost


class Held:
    """A thread's connection, taken from the pool (so closing the pool closes it too) and given
    back when the thread ends and its locals go."""

    def __init__(self, pool: redis.ConnectionPool):
        self.conn, self.pid = pool.get_connection(), os.getpid()
        weakref.finalize(self, pool.release, self.conn).atexit = False


class Direct:
    """Commands over a connection per thread."""

    def __init__(self, pool: redis.ConnectionPool):
        self.pool = pool
        self.local = threading.local()

    def connection(self) -> redis.Connection:
        held = getattr(self.local, 'held', None)
        if held is None or held.pid != os.getpid():  # none yet, or the parent's in a forked child
            held = self.local.held = Held(self.pool)
        return held.conn

    def command(self, *args, retry: bool = True):
        """One command's reply. A broken connection is reopened and the command sent once more
        at once (a Redis that restarted answers the second time; redis-py's client tries three
        times, backing off), unless `retry` is false: the caller must hear that a reply may
        have been lost."""
        try:
            return self.exchange(args)
        except BROKEN:
            if not retry:
                raise
            return self.exchange(args)

    def exchange(self, args: tuple):
        conn = self.connection()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except BROKEN:
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
