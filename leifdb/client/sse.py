"""An incremental Server-Sent Events parser (the WHATWG event-stream format), sans I/O."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseMessage", "SseParser"]


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str  # "" for the default ("message")
    data: str
    id: str | None  # the id: field of this message, if it had one


class SseParser:
    """Feed bytes as they arrive; get whole messages back. Lines end with LF, CRLF or CR;
    ``:`` starts a comment; ``retry:`` is kept in ``retry``; a message with no ``data``
    is not dispatched (but its ``id:`` still updates ``last_id``)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None
        self.retry: int | None = None

    def feed(self, data: bytes) -> list[SseMessage]:
        self._buffer += data
        out: list[SseMessage] = []
        while True:
            lf, cr = self._buffer.find(b"\n"), self._buffer.find(b"\r")
            if lf < 0 and cr < 0:
                return out
            cut = min(i for i in (lf, cr) if i >= 0)
            line = self._buffer[:cut]
            skip = 1
            if self._buffer[cut] == 13:
                if cut + 1 == len(self._buffer):
                    return out  # a CR at the end: wait, an LF may follow
                if self._buffer[cut + 1] == 10:
                    skip = 2
            self._buffer = self._buffer[cut + skip:]
            message = self._line(line.decode("utf-8", "replace"))
            if message is not None:
                out.append(message)

    def _line(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        event, data, msg_id = self._event, self._data, self._id
        self._event, self._data, self._id = "", [], None
        if not data:
            return None
        return SseMessage(event, "\n".join(data), msg_id)
