"""Cache-aside reads that stay consistent with the database, for any JSON read endpoint.

- `read(key, compute, ttl)`: the cached value, or compute() stored for ttl plus up to 10% jitter.
  On a miss one caller computes (a fill lock in the cache); the others wait for its value.
- Namespaces: `read(..., namespace='courses')` files the key under the namespace's current
  version, so `drop(namespaces=['courses'])` drops every page of a list in one write.
- `drop()` is the first delete after a write; invalidation.writing() commits, drops, and schedules
  the second delete that removes a value a racing reader put back.
- A failing cache never fails a read: the value comes from the database (status 'bypass'), and
  the cache is left alone for a moment (store.Outage).
"""
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sprig.cache.store import CacheError, LockTimeout, cache
from sprig.metrics import metrics

T = TypeVar('T')

JITTER = 0.1  # share of the ttl added at random
MISSING_TTL = 5  # seconds a computed None ("no such course") is kept: probes cost little, and
#   a flood of made-up ids cannot fill the cache
FILL_TTL = 10  # seconds a filler may hold a key's fill lock (a crashed filler frees it then)
WAIT_FOR_FILL = 2.0  # seconds a reader waits for another's fill before computing itself
NEAR_TTL = 1.0  # seconds read_near keeps a value in the process


@dataclass(frozen=True)
class Entry:
    value: Any
    etag: str  # a digest of the value, for ETag / If-None-Match
    status: str  # hit, miss or bypass (the X-Cache header)


def etag_of(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def read(key: str, compute: Callable[[], Any], ttl: float, namespace: str | None = None) -> Entry:
    """The value under key (in namespace), from the cache or from compute(). Where the cache has
    a generation (SQLite, memory), this process keeps a copy while the generation holds: a drop
    anywhere on the machine moves it, so the next read here asks the shared cache again."""
    generation = cache.generation and cache.generation.current()  # before the shared read: a drop
    # between the two then leaves this copy under an old number
    local = f'{namespace}:{key}'
    now = time.monotonic()
    entry = cache.near.copy(local, generation, now) if cache.generation else None
    if entry is not None:
        metrics.cache_read('hit')
        return entry

    def from_cache() -> Entry:
        full = f'{namespace}:{version(namespace)}:{key}' if namespace else key
        return cached_entry(full) or fill(full, compute, ttl)
    entry = or_else(from_cache, lambda: computed(compute, 'bypass'))
    metrics.cache_read(entry.status)
    if cache.generation and entry.status != 'bypass':
        cache.near.keep(local, generation, now + lifetime(entry, ttl), Entry(entry.value, entry.etag, 'hit'))
    return entry


def read_near(key: str, compute: Callable[[], Any], ttl: float) -> Entry:
    """read(), kept in this process for NEAR_TTL seconds too: for the hottest keys, read on every
    request of a storm, where the shared cache's round trip is a good part of the request. Another
    process's change shows here within NEAR_TTL; this process's own at once (drop)."""
    if cache.generation is not None:  # read() keeps a copy already, good until any drop anywhere
        return read(key, compute, ttl)
    now = time.monotonic()
    entry = cache.near.get(key, now)
    if entry is not None:
        metrics.cache_read('hit')
    else:
        entry = read(key, compute, ttl)
        if entry.status != 'bypass' and entry.value is not None:  # "no such key" stays shared-only
            cache.near.put(key, entry, since=now, until=now + NEAR_TTL)
    return entry


def or_else(from_cache: Callable[[], T], fallback: Callable[[], T]) -> T:
    """from_cache(), or fallback() while the cache is down: a reader that can do without it."""
    if cache.outage.active():
        return fallback()
    try:
        return from_cache()
    except CacheError as exc:
        cache.outage.failed(exc)
        return fallback()


def computed(compute: Callable[[], Any], status: str) -> Entry:
    value = compute()
    return Entry(value, etag_of(value), status)


def cached_entry(full: str) -> Entry | None:
    stored = cache.get(f'data:{full}')
    return None if stored is None else Entry(stored['value'], stored['etag'], 'hit')


def fill(full: str, compute: Callable[[], Any], ttl: float) -> Entry:
    """Compute and store the value, one caller at a time; the others wait for its value."""
    try:
        with cache.lock(f'fill:{full}', ttl=FILL_TTL, wait=0):
            entry = cached_entry(full)  # filled between our miss and our lock
            if entry is None:
                entry = computed(compute, 'miss')
                store(full, entry, ttl)
            return entry
    except LockTimeout:
        return wait_for_fill(full) or computed(compute, 'miss')


def lifetime(entry: Entry, ttl: float) -> float:
    """How long a value is kept: a computed None ("no such course") only briefly."""
    return ttl if entry.value is not None else min(ttl, MISSING_TTL)


def store(full: str, entry: Entry, ttl: float) -> None:
    ttl = lifetime(entry, ttl)
    cache.set(f'data:{full}', {'value': entry.value, 'etag': entry.etag}, ttl=ttl * (1 + random.uniform(0, JITTER)))


def wait_for_fill(full: str) -> Entry | None:
    deadline, pause = time.monotonic() + WAIT_FOR_FILL, 0.005
    while time.monotonic() < deadline:
        time.sleep(pause)
        entry = cached_entry(full)
        if entry is not None:
            return entry
        pause = min(pause * 2, 0.05)
    return None


def put(key: str, value: Any, ttl: float) -> None:
    """Store a freshly computed value (a rebuild), whatever is cached now."""
    store(key, Entry(value, etag_of(value), 'miss'), ttl)
    moved_on()


def version(namespace: str) -> int:
    """The namespace's current version; a missing one starts from the clock, so that it never
    comes back to a version whose entries may still be cached."""
    current = cache.get(f'ns:{namespace}')
    if current is None:
        cache.add(f'ns:{namespace}', time.time_ns())
        current = cache.get(f'ns:{namespace}')
    return current


def drop(keys: Iterable[str] = (), namespaces: Iterable[str] = ()) -> None:
    """Delete keys and move namespaces to a new version (dropping everything filed under them).

    :raise CacheError: when the cache is down (the caller decides whether that matters).
    """
    for key in keys:
        cache.near.drop(key)
    keys = [f'data:{key}' for key in keys]
    try:
        if keys:
            cache.delete(*keys)
        for namespace in namespaces:
            cache.set(f'ns:{namespace}', time.time_ns())
    finally:
        moved_on()  # after the shared deletes: a reader that sees the new number reads after them


def moved_on() -> None:
    """Every process's kept copies of cached values stop being good (see read())."""
    if cache.generation is not None:
        cache.generation.bump()
