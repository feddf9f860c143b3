"""What crosses a worker's RPC socket: length-prefixed pickle frames, and exceptions
encoded so they come back as the same class with the same attributes.

Pickle is safe here only because of where it runs: both ends are processes of this
package, of the same version, on one machine, talking over a ``socketpair`` the node
creates and hands to its own child; nothing else can connect to it. It is also the fastest
encoder the standard library has (C), which matters on the consensus process's hot path.

A frame is a 4-byte big-endian length and a pickle. What the pickle holds is the
business of ``leifdb.worker.calls``; this module only frames, unframes and rebuilds
exceptions.
"""

from __future__ import annotations

import builtins
import importlib
import pickle
import struct
from typing import Any

__all__ = [
    "FrameDecoder",
    "FrameTooLarge",
    "MAX_FRAME_BYTES",
    "decode_exception",
    "encode_exception",
    "encode_frame",
]

_LENGTH = struct.Struct(">I")
#: A frame larger than this is a bug (or a corrupt stream): the connection is dropped.
MAX_FRAME_BYTES = 1 << 31
# Exceptions that are neither ours nor builtins but may come out of a service call.
_OTHER_ALLOWED = frozenset({
    ("twisted.internet.defer", "CancelledError"),
    ("twisted.internet.defer", "TimeoutError"),
    ("twisted.internet.error", "TimeoutError"),
})
EncodedException = tuple[str, str, tuple[Any, ...], dict[str, Any]]


class FrameTooLarge(Exception):
    """A frame's declared length is over ``MAX_FRAME_BYTES``: the stream is not ours."""


def encode_frame(payload: Any) -> bytes:
    """``payload`` pickled, behind its length."""
    body = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"a frame of {len(body)} bytes is over {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(body)) + body


class FrameDecoder:
    """Bytes in (in pieces of any size), whole payloads out; the buffer is trimmed once
    per ``feed``, not once per frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Every payload completed by ``data``, in order."""
        buffer = self._buffer
        buffer += data
        payloads = []
        offset = 0
        try:
            while len(buffer) - offset >= 4:
                (length,) = _LENGTH.unpack_from(buffer, offset)
                if length > MAX_FRAME_BYTES:
                    raise FrameTooLarge(f"a frame declares {length} bytes")
                end = offset + 4 + length
                if end > len(buffer):
                    break
                payloads.append(pickle.loads(buffer[offset + 4:end]))
                offset = end
        finally:
            del buffer[:offset]
        return payloads


def encode_exception(error: BaseException) -> EncodedException:
    """Class (module and qualified name), ``args`` and ``__dict__``: what
    ``decode_exception`` rebuilds it from without calling its ``__init__`` (whose
    signature need not match ``args``: ``NotLeaderError(leader_http)``)."""
    cls = type(error)
    return (cls.__module__, cls.__qualname__, tuple(error.args), dict(vars(error)))


def decode_exception(encoded: EncodedException) -> BaseException:
    """The exception ``encode_exception`` encoded: the same class with the same ``args``
    and attributes when it is an exception class of ``leifdb`` or a builtin; anything
    else becomes a ``RuntimeError`` naming it, so no other class is ever instantiated."""
    module, qualname, args, attributes = encoded
    cls = _allowed_class(module, qualname)
    if cls is None:
        text = f": {args[0]}" if args else ""
        return RuntimeError(f"{module}.{qualname}{text}")
    error = cls.__new__(cls)
    error.args = tuple(args)
    if attributes:
        error.__dict__.update(attributes)
    return error


def _allowed_class(module: str, qualname: str) -> type[BaseException] | None:
    if module == "builtins":
        owner: Any = builtins
    elif module.startswith("leifdb.") or (module, qualname) in _OTHER_ALLOWED:
        try:
            owner = importlib.import_module(module)
        except ImportError:
            return None
    else:
        return None
    for part in qualname.split("."):
        owner = getattr(owner, part, None)
    if isinstance(owner, type) and issubclass(owner, BaseException):
        return owner
    return None
