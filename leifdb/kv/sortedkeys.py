"""A sorted set of keys for ordered range scans.

Keys live in chunks of a few hundred sorted strings, with a list of each chunk's largest
key to bisect on. Insert and delete cost O(log n + chunk size) instead of the O(n) memmove
of one flat sorted list, and a scan from any key costs O(log n + keys read).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterable, Iterator

DEFAULT_LOAD = 512


class SortedKeys:
    """Strings in code point order (which is also UTF-8 byte order), without duplicates.

    A chunk splits when it grows past ``2 * load`` keys and merges with a neighbour when it
    shrinks below ``load // 2``. Do not change the set while iterating over it.
    """

    def __init__(self, load: int = DEFAULT_LOAD) -> None:
        if load < 4:
            raise ValueError("load must be at least 4")
        self._load = load
        self._chunks: list[list[str]] = []
        self._maxes: list[str] = []
        self._len = 0

    @classmethod
    def from_sorted(cls, keys: Iterable[str], load: int = DEFAULT_LOAD) -> SortedKeys:
        """Build in O(n) from strictly increasing ``keys``; ValueError if they are not."""
        self = cls(load)
        chunk: list[str] = []
        previous: str | None = None
        for key in keys:
            if previous is not None and key <= previous:
                raise ValueError("keys are not strictly increasing")
            previous = key
            chunk.append(key)
            if len(chunk) == load:
                self._append_chunk(chunk)
                chunk = []
        if chunk:
            self._append_chunk(chunk)
        return self

    def _append_chunk(self, chunk: list[str]) -> None:
        self._chunks.append(chunk)
        self._maxes.append(chunk[-1])
        self._len += len(chunk)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        return j < len(chunk) and chunk[j] == key

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk

    def add(self, key: str) -> bool:
        """Insert ``key``; False (and no change) if it was already present."""
        if not self._chunks:
            self._append_chunk([key])
            return True
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        if j < len(chunk) and chunk[j] == key:
            return False
        chunk.insert(j, key)
        self._maxes[i] = chunk[-1]
        self._len += 1
        if len(chunk) > 2 * self._load:
            half = len(chunk) // 2
            self._chunks[i : i + 1] = [chunk[:half], chunk[half:]]
            self._maxes[i : i + 1] = [chunk[half - 1], chunk[-1]]
        return True

    def discard(self, key: str) -> bool:
        """Remove ``key``; False (and no change) if it was absent."""
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            return False
        del chunk[j]
        self._len -= 1
        if not chunk:
            del self._chunks[i]
            del self._maxes[i]
        else:
            self._maxes[i] = chunk[-1]
            if len(chunk) < self._load // 2 and len(self._chunks) > 1:
                self._merge_at(i if i + 1 < len(self._chunks) else i - 1)
        return True

    def _merge_at(self, i: int) -> None:
        """Merge chunks ``i`` and ``i + 1``, splitting the result again if it is too big."""
        merged = self._chunks[i] + self._chunks[i + 1]
        if len(merged) > 2 * self._load:
            half = len(merged) // 2
            parts = [merged[:half], merged[half:]]
        else:
            parts = [merged]
        self._chunks[i : i + 2] = parts
        self._maxes[i : i + 2] = [part[-1] for part in parts]

    def iter_from(self, key: str, inclusive: bool = True) -> Iterator[str]:
        """Keys ``>= key`` (or ``> key`` when not ``inclusive``) in order, lazily."""
        find = bisect_left if inclusive else bisect_right
        i = find(self._maxes, key)
        if i == len(self._maxes):
            return
        chunk = self._chunks[i]
        for j in range(find(chunk, key), len(chunk)):
            yield chunk[j]
        for k in range(i + 1, len(self._chunks)):
            yield from self._chunks[k]

    def check_invariants(self) -> None:
        """AssertionError if the internal structure is inconsistent (for tests)."""
        assert len(self._chunks) == len(self._maxes)
        assert all(self._chunks), "empty chunk"
        assert [c[-1] for c in self._chunks] == self._maxes
        flat = [k for c in self._chunks for k in c]
        assert all(a < b for a, b in zip(flat, flat[1:])), "not strictly increasing"
        assert len(flat) == self._len
        assert all(len(c) <= 2 * self._load for c in self._chunks)
