"""One small in-memory cache for what the app recomputes per click: thread-safe, least recently
used first out, keyed by what the value depends on (file stamps, content hashes).

    _tables = LRUCache(size=4)
    data = _tables.get_or_make(name, lambda: load(name), version=file_stamp(path))

A value is made outside the lock, so two threads that miss at once may both make it (the last
one is kept); nothing slow ever runs while the lock is held.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

__all__ = ["LRUCache", "file_stamp"]

V = TypeVar("V")
_MISSING = object()


class LRUCache:
    """At most ``size`` values; ``version``: a value made for another version is a miss (and replaced)."""

    def __init__(self, *, size: int):
        if size < 1:
            raise ValueError("an LRUCache holds at least one value")
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()

    def get(self, key: Hashable, *, version: Any = None, default: Any = None) -> Any:
        with self._lock:
            hit = self._items.get(key, _MISSING)
            if hit is _MISSING or hit[0] != version:
                return default
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, value: V, *, version: Any = None) -> V:
        with self._lock:
            self._items[key] = (version, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], V], *, version: Any = None) -> V:
        hit = self.get(key, version=version, default=_MISSING)
        return self.put(key, make(), version=version) if hit is _MISSING else hit

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items


def file_stamp(*paths: str | os.PathLike) -> tuple:
    """``(mtime_ns, size)`` of each path, ``None`` for a missing one: changes when a file is rewritten."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)
