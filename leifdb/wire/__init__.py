"""Protobuf <-> LeifDB values: Raft frames, key-value commands and memberships.

The only package that imports the generated ``leifdb_pb2``; everything else sees plain
dataclasses. Bad input raises ``DecodeError``; values that would not decode raise
``EncodeError``.
"""

from leifdb.wire.commands import (
    decode_command,
    decode_membership,
    encode_command,
    encode_membership,
)
from leifdb.wire.errors import DecodeError, EncodeError
from leifdb.wire.frames import (
    REQUEST_OF_REPLY,
    REQUEST_TYPES,
    Body,
    Frame,
    Hello,
    decode_frame,
    encode_hello,
    encode_message,
)

__all__ = [
    "REQUEST_OF_REPLY",
    "REQUEST_TYPES",
    "Body",
    "DecodeError",
    "EncodeError",
    "Frame",
    "Hello",
    "decode_command",
    "decode_frame",
    "decode_membership",
    "encode_command",
    "encode_hello",
    "encode_membership",
    "encode_message",
]
