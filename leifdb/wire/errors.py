"""The errors of the wire layer: one for bytes we cannot accept, one for values we cannot send."""

from __future__ import annotations


class DecodeError(Exception):
    """The bytes are not a well-formed value: not protobuf, a missing part, or a value the
    schema allows but LeifDB never produces (an entry at index 0, an empty sender, ...).
    The only exception the ``decode_*`` functions raise for bad input."""


class EncodeError(ValueError):
    """A value cannot be encoded: a field out of range or a combination ``decode_*`` would
    reject. Encoding refuses what decoding would refuse, so every encoded value round-trips."""
