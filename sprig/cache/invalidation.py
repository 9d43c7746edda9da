"""Invalidation: a write that cached reads depend on commits, then drops what it made stale, and
drops it once more a moment later, for a reader that read the old rows during the write and
stored them after the first delete (the delayed second delete, run by the queue)."""
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from models import database
from sprig.cache.aside import drop
from sprig.cache.store import CacheError, cache
from sprig.queue.storage import QUEUE_ERRORS

log = logging.getLogger('sprig.invalidation')


@dataclass(frozen=True)
class Stale:
    """What a write makes stale: cache keys, and namespaces (every key filed under them)."""

    keys: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()


class SecondDelete:
    """Schedules the second delete: tasks.py binds its drop_cached task and [cache]
    double_delete_delay here (the cache cannot import the tasks, which import it)."""

    def __init__(self):
        self.task = None
        self.delay = 0.0

    def bind(self, task, delay: float) -> None:
        self.task, self.delay = task, delay

    def schedule(self, stale: Stale) -> None:
        try:
            self.task.schedule((list(stale.keys), list(stale.namespaces)), delay=self.delay)
        except QUEUE_ERRORS as exc:
            log.warning('could not schedule the second cache delete of %s: %s', stale, exc)


second_delete = SecondDelete()


@contextmanager
def writing(stale: Stale) -> Iterator[None]:
    """Commit the block's writes, then drop what they made stale, now and again a moment later.
    An outage of the cache or the queue does not undo the committed write: it is logged, and the
    TTL and the periodic rebuild catch up."""
    with database.atomic():
        yield
    try:
        drop(stale.keys, stale.namespaces)
    except CacheError as exc:
        cache.outage.failed(exc)
    second_delete.schedule(stale)
