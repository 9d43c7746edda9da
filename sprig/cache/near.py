"""The near cache: values kept in this process for a moment (aside.read_near)."""
import math
import time
from typing import Any


class Near:
    """Values kept in this process for a moment (cached.read_near), and when a write of this
    process last dropped each key, so that a read begun before the drop does not put it back."""

    LIMIT = 1000  # keys; past it everything goes, so made-up ids cannot fill the memory

    def __init__(self):
        self.values: dict[str, tuple[float, Any]] = {}  # key -> (until, value)
        self.dropped: dict[str, float] = {}  # key -> time.monotonic() of the last drop

    def get(self, key: str, now: float) -> Any:
        kept = self.values.get(key)
        return kept[1] if kept is not None and kept[0] > now else None

    def put(self, key: str, value: Any, since: float, until: float) -> None:
        """Keep value until `until`, unless the key was dropped after `since` (when it was read)."""
        if self.dropped.get(key, -math.inf) >= since:
            return
        if len(self.values) >= self.LIMIT:
            self.values.clear()
        self.values[key] = (until, value)

    def drop(self, key: str) -> None:
        if len(self.dropped) >= self.LIMIT:
            self.dropped.clear()
        self.dropped[key] = time.monotonic()
        self.values.pop(key, None)
