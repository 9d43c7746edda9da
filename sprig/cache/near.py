"""The near cache: values kept in this process, for a moment (aside.read_near) or while nothing
has been dropped anywhere on this machine since they were read (aside.read, with a Generation)."""
import fcntl
import math
import mmap
import os
import time
from typing import Any


class Near:
    """Values kept in this process for a moment (cached.read_near), and when a write of this
    process last dropped each key, so that a read begun before the drop does not put it back."""

    LIMIT = 1000  # keys; past it everything goes, so made-up ids cannot fill the memory

    def __init__(self):
        self.values: dict[str, tuple[float, Any]] = {}  # key -> (until, value)
        self.dropped: dict[str, float] = {}  # key -> time.monotonic() of the last drop
        self.copies: dict[str, tuple[int, float, Any]] = {}  # key -> (generation, until, value)

    def copy(self, key: str, generation: int, now: float) -> Any:
        """The value kept under key, if it was read under this generation and its TTL holds."""
        kept = self.copies.get(key)
        return kept[2] if kept is not None and kept[0] == generation and kept[1] > now else None

    def keep(self, key: str, generation: int, until: float, value: Any) -> None:
        if len(self.copies) >= self.LIMIT:
            self.copies.clear()
        self.copies[key] = (generation, until, value)

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


class Generation:
    """A number every process of this machine shares, in an 8-byte file mapped into each: moved
    on by every drop and every rebuild, so that a copy of a cached value kept in a process stays
    good while the number it was read under is still the current one. Reading it is a memory read,
    not a round trip; a SQLite cache lives on one machine, so the file reaches every process that
    shares the cache."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size < 8:
            os.ftruncate(self.fd, 8)
        self.map = mmap.mmap(self.fd, 8)

    def current(self) -> int:
        return int.from_bytes(self.map[:8], 'little')

    def bump(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # writers are rare: a lock, not an atomic add
        try:
            self.map[:8] = (self.current() + 1).to_bytes(8, 'little')
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class LocalGeneration:
    """Generation for a cache that lives in this process alone (memory://)."""

    def __init__(self):
        self.number = 0

    def current(self) -> int:
        return self.number

    def bump(self) -> None:
        self.number += 1

    def close(self) -> None:
        pass
