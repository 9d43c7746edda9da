"""Fixed-window rate limits counted in the shared cache, so every web process counts together."""
import math
import time

from sprig.cache.store import cache
from sprig.web.envelope import ApiError


def throttle(key: str, limit: int, window: int, what: str) -> None:
    """Count one hit on key; at most `limit` per `window` seconds (0 = no limit).

    :raise ApiError 429: over the limit, with retry_after and a Retry-After header.
    """
    if limit <= 0:
        return
    now = time.time()
    bucket = int(now // window)
    if cache.incr(f'rate:{key}:{bucket}', ttl=window) <= limit:
        return
    retry_after = max(1, math.ceil((bucket + 1) * window - now))
    raise too_many(f'too many {what}; try again in {retry_after} s', retry_after)


def refuse_after_failures(key: str, limit: int, window: int) -> None:
    """:raise ApiError 429: `key` failed `limit` times (0 = no limit) within the last `window` s."""
    if limit > 0 and cache.get(f'failures:{key}', 0) >= limit:
        raise too_many(f'too many failed attempts; try again in {window // 60} minutes', window)


def count_failure(key: str, window: int) -> None:
    cache.incr(f'failures:{key}', ttl=window)


def too_many(msg: str, retry_after: int) -> ApiError:
    return ApiError(429, msg, retry_after=retry_after, headers={'Retry-After': str(retry_after)})
