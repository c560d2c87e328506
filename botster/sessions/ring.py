"""The bounded output buffer of a session: the last N bytes of PTY output, addressed by offset.

An offset counts bytes since the session started, so a reader that knows how much it has seen
can ask for exactly the rest. Once more than ``capacity`` bytes were written, the oldest are
gone; ``start`` says where the buffer begins and a reader behind it learns how many it missed.

The storage is an anonymous mmap: pages are touched only as output arrives, so an idle session
does not pay for its whole capacity. Not here: what the bytes mean (``terminal.py``) and who
reads them (``process.py``).
"""

from __future__ import annotations

import mmap

__all__ = ["OutputRing"]


class OutputRing:
    """A ring of the last ``capacity`` output bytes.

    Args:
        capacity: bytes kept (at least 1).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.end = 0
        self._mem = mmap.mmap(-1, capacity)

    @property
    def start(self) -> int:
        """The oldest offset still held."""
        return max(0, self.end - self.capacity)

    def append(self, data: bytes) -> None:
        """Adds bytes at ``end``, overwriting the oldest when full."""
        n = len(data)
        if n == 0:
            return
        cap = self.capacity
        if n > cap:
            self.end += n - cap
            data = data[n - cap :]
            n = cap
        pos = self.end % cap
        first = min(n, cap - pos)
        self._mem[pos : pos + first] = data[:first]
        if first < n:
            self._mem[0 : n - first] = data[first:]
        self.end += n

    def read(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes from ``offset``.

        Raises:
            ValueError: ``offset`` is before ``start`` or after ``end``.
        """
        if not self.start <= offset <= self.end:
            raise ValueError(f"offset {offset} is outside [{self.start}, {self.end}]")
        n = min(limit, self.end - offset)
        cap = self.capacity
        pos = offset % cap
        first = min(n, cap - pos)
        if first == n:
            return self._mem[pos : pos + n]
        return self._mem[pos:cap] + self._mem[0 : n - first]

    def close(self) -> None:
        """Releases the memory."""
        self._mem.close()
