"""Fixed-window rate limits counted in the shared cache, so every web process counts together."""
import math
import time

from sprig.cache.store import cache
from sprig.web.envelope import ApiError


def throttle(key: str, limit: int, window: int, what: str) -> None:
    """Count one hit on key; at most `limit` per `window` seconds (0 = no limit).

    :raise ApiError 429: over the limit, with retry_after and a Retry-After header.
    """
    if limit > 0 and count(key, window) > limit:
        refuse(window, what)


def refuse_when_spent(key: str, limit: int, window: int, what: str) -> None:
    """Count nothing; refuse when key was counted `limit` times this window (0 = no limit): for a
    budget that only what was really done spends (count() afterwards), so a caller's refused
    attempts never cost the budget's owner.

    :raise ApiError 429: as throttle.
    """
    if limit > 0 and cache.get(bucket_key(key, window), 0) >= limit:
        refuse(window, what)


def count(key: str, window: int) -> int:
    """One more on key in this window; the count so far."""
    return cache.incr(bucket_key(key, window), ttl=window)


def bucket_key(key: str, window: int) -> str:
    return f'rate:{key}:{int(time.time() // window)}'


def refuse(window: int, what: str) -> None:
    now = time.time()
    retry_after = max(1, math.ceil((int(now // window) + 1) * window - now))
    raise too_many(f'too many {what}; try again in {retry_after} s', retry_after)


def attempt(key: str, limit: int, window: int, msg: str, **payload) -> None:
    """Count one attempt on key before it is checked, so that parallel attempts cannot slip in
    under the limit; at most `limit` per `window` seconds (0 = no limit) until forgive(key).

    :raise ApiError 429: the attempt is over the limit (not checked at all).
    """
    if limit > 0 and cache.incr(f'attempts:{key}', ttl=window) > limit:
        raise too_many(msg, window, **payload)


def forgive(key: str) -> None:
    """The attempts on key succeeded: those that failed before no longer count."""
    cache.delete(f'attempts:{key}')


def too_many(msg: str, retry_after: int, **payload) -> ApiError:
    return ApiError(429, msg, retry_after=retry_after, headers={'Retry-After': str(retry_after)}, **payload)
