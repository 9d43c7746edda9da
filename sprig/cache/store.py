"""The cache: JSON values with TTLs, add-if-absent, atomic counters and short locks, in front of a
backend (backends.py: SQLite, Redis or memory).

`cache` is bound once by init_cache(settings), like the database proxy in models.py. Any
backend failure surfaces as CacheError, so that callers can degrade to the database.
"""
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sprig.cache.backends import open_backend
from sprig.cache.near import Near
from sprig.settings import Settings

log = logging.getLogger('sprig.cache')


class CacheError(Exception):
    """The cache backend failed or cannot be reached."""


class LockTimeout(Exception):
    """The lock stayed taken for longer than the caller would wait."""


class Outage:
    """When the cache last failed, for readers that can do without it (cached.read): they skip it
    for BREAK_FOR seconds, so an unreachable cache does not cost each request a timeout, and the
    failure is logged once per LOG_EVERY seconds, not once per request."""

    BREAK_FOR = 2.0
    LOG_EVERY = 60.0

    def __init__(self):
        self.guard = threading.Lock()
        self.until = 0.0
        self.logged = float('-inf')

    def active(self) -> bool:
        return time.monotonic() < self.until

    def failed(self, exc: CacheError) -> None:
        now = time.monotonic()
        with self.guard:
            self.until = now + self.BREAK_FOR
            due = now - self.logged >= self.LOG_EVERY
            if due:
                self.logged = now
        if due:
            log.warning('cache unavailable, reads go to the database (said once per %d s): %s',
                        self.LOG_EVERY, exc)


class Cache:
    """Prefixed keys and JSON values in front of a backend; unbound until initialize()."""

    def __init__(self):
        self.backend = None
        self.prefix = ''
        self.outage = Outage()
        self.near = Near()
        self.generation = None

    def initialize(self, backend, prefix: str = '') -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend, self.prefix, self.outage, self.near = backend, prefix, Outage(), Near()
        # Shared by the processes that share the cache, or None where they may be on several
        # machines (Redis): then every read asks the shared cache.
        self.generation = getattr(backend, 'generation', None)

    @contextmanager
    def failures(self) -> Iterator[None]:
        if self.backend is None:
            raise RuntimeError('cache used before init_cache()')
        try:
            yield
        except self.backend.errors as exc:
            raise CacheError(f'{type(exc).__name__}: {exc}') from exc

    def get(self, key: str, default: Any = None) -> Any:
        with self.failures():
            text = self.backend.get(self.prefix + key)
        return default if text is None else json.loads(text)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        with self.failures():
            self.backend.set(self.prefix + key, json.dumps(value), ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store value only if the key is absent (or expired); True if this call stored it."""
        with self.failures():
            return self.backend.add(self.prefix + key, json.dumps(value), ttl)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with self.failures():
            return self.backend.delete(tuple(self.prefix + key for key in keys))

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add delta atomically and return the new value; ttl applies when the counter is created."""
        with self.failures():
            return self.backend.incr(self.prefix + key, delta, ttl)

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        return self.incr(key, -delta, ttl)

    def claim(self, counter: str, marker: str, ttl: float, mark: Any = 1) -> str:
        """Take one unit of a counted stock for a claimant, in one atomic step: 'claimed' (the
        counter went down by one and the marker holds `mark` for ttl seconds), 'held' (the marker
        is already set), 'empty' (the counter is 0) or 'unknown' (no counter: the caller sets it)."""
        with self.failures():
            return self.backend.claim(self.prefix + counter, self.prefix + marker, ttl, json.dumps(mark))

    def scan(self, prefix: str) -> dict[str, Any]:
        """Every live key that starts with prefix, with its value (for a sweep, not a hot path)."""
        with self.failures():
            found = self.backend.scan(self.prefix + prefix)
        return {key.removeprefix(self.prefix): json.loads(text) for key, text in found.items()}

    def adjust(self, key: str, delta: int) -> bool:
        """Add delta to an existing counter, keeping its TTL; False, and nothing done, when there is
        none (unlike incr, which would start one without the TTL its owner gives it)."""
        with self.failures():
            return self.backend.adjust(self.prefix + key, delta)

    def release(self, counter: str, marker: str) -> bool:
        """Undo a claim: drop the marker and give the unit back; False if there was no marker."""
        with self.failures():
            return self.backend.release(self.prefix + counter, self.prefix + marker)

    @contextmanager
    def lock(self, name: str, ttl: float = 10, wait: float = 5) -> Iterator[None]:
        """Hold `name` for at most ttl seconds, across processes; wait up to `wait` to take it.

        :raise LockTimeout: when another holder kept it longer than `wait`.
        """
        key, token = f'lock:{name}', secrets.token_hex(8)
        deadline, pause = time.monotonic() + wait, 0.005
        while not self.add(key, token, ttl):
            if time.monotonic() >= deadline:
                raise LockTimeout(name)
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        try:
            yield
        finally:
            with self.failures():
                self.backend.delete_if(self.prefix + key, json.dumps(token))

    def ping(self) -> None:
        with self.failures():
            self.backend.ping()


cache = Cache()


def init_cache(settings: Settings) -> Cache:
    """Bind the module's cache to the backend [cache] url names."""
    cache.initialize(open_backend(settings.cache.url), settings.cache.prefix)
    return cache
