"""The cache of finished tile bodies (vector and heat tiles) each web worker keeps."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable


class TileCache:
    """A thread-safe LRU of finished tile bodies, bounded by their total size in bytes.

    Keys carry the layers' data versions, so entries of older data are never hit again and age out.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> bytes | None:
        """The cached body (marking it recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        """Store a body, evicting the least recently used ones beyond the byte budget."""
        size = len(value) + 100  # the key and bookkeeping cost something even for empty tiles
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old) + 100
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted) + 100

    @property
    def size_bytes(self) -> int:
        """Bytes held (bodies plus a fixed overhead per entry)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
