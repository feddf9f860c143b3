"""Turning what a client sends into checked values, or an ``ApiError`` (400 or 413).

Everything here is pure or reads the request only; nothing a client sends may raise anything
but ``ApiError`` from these functions.

Decoding rules, chosen once for the whole API:

- The path is percent-decoded before routing, so ``%2F`` in a key is the same as ``/``
  (``/db/a%2Fb`` and ``/db/a/b`` name the key ``a/b``). A ``%`` not followed by two hex
  digits, or bytes that are not UTF-8 after decoding, give 400.
- The query string is ``application/x-www-form-urlencoded``: ``+`` means a space, so a
  literal ``+`` must be sent as ``%2B``. A repeated parameter gives 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterable
from urllib.parse import unquote_to_bytes, urlsplit

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError
from leifdb.kv.commands import Condition, Fence
from leifdb.service.api import (
    CONSISTENCY_LINEARIZABLE,
    CONSISTENCY_STALE,
    LOCK_PREFIX,
    ServiceLimits,
)

__all__ = [
    "Field",
    "Query",
    "check_name",
    "check_text",
    "check_ttl",
    "decode_component",
    "duration_field",
    "id_field",
    "integer_field",
    "lenient_path",
    "load_json",
    "parse_body",
    "parse_bool",
    "parse_condition",
    "parse_consistency",
    "parse_duration",
    "parse_fence",
    "parse_key",
    "parse_lease_id",
    "parse_limit",
    "parse_query",
    "parse_revision",
    "parse_timeout",
    "body_too_large",
    "read_body",
    "single_header",
    "split_uri",
    "text_field",
]

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]{1,19}")
_DURATION = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,6}))?(ms|s|m)?")
_MAX_REVISION = (1 << 63) - 1
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def split_uri(uri: bytes) -> tuple[bytes, bytes | None]:
    """The raw (still percent-encoded) path and query of a request-target. The query is
    None when there is no ``?``. An absolute-form target (``http://host/path``) is reduced
    to its path."""
    if not uri.startswith(b"/"):
        parts = urlsplit(uri)
        path = parts.path or b"/"
        query = parts.query if b"?" in uri else None
        return path, query
    path, sep, query = uri.partition(b"?")
    return path, (query if sep else None)


def decode_component(raw: bytes, what: str, *, plus_is_space: bool = False) -> str:
    """Percent-decode ``raw`` strictly and decode it as UTF-8; 400 if either fails."""
    if _BAD_PERCENT.search(raw):
        raise ApiError(400, f"invalid percent-encoding in the {what}")
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"the {what} is not valid UTF-8 after percent-decoding") from None


def lenient_path(uri: bytes) -> str:
    """The request's path, decoded without failing (bad bytes become U+FFFD): to tell
    which part of the API a request was meant for even when it is malformed."""
    raw = split_uri(uri)[0]
    return unquote_to_bytes(raw).decode("utf-8", "replace")


class Query:
    """Decoded query parameters. ``single`` is the only accessor: a parameter may be given
    at most once."""

    def __init__(self, params: dict[str, list[str]]) -> None:
        self._params = params

    def single(self, name: str) -> str | None:
        values = self._params.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(400, f"query parameter {name!r} is given more than once")
        return values[0]

    def names(self) -> Iterable[str]:
        return self._params.keys()

    def check_names(self, declared: Iterable[str]) -> None:
        """400 naming the first parameter not among ``declared``: a typo such as
        ``?consistancy=stale`` must not silently change nothing."""
        declared = set(declared)
        for name in self._params:
            if name not in declared:
                raise ApiError(400, f"unknown query parameter {name!r}", parameter=name)


def parse_query(raw: bytes | None) -> Query:
    """Parse a raw query string; a name without ``=`` has the value ``""``."""
    params: dict[str, list[str]] = {}
    if raw:
        for pair in raw.split(b"&"):
            if not pair:
                continue
            raw_name, _, raw_value = pair.partition(b"=")
            name = decode_component(raw_name, "query string", plus_is_space=True)
            value = decode_component(raw_value, "query string", plus_is_space=True)
            params.setdefault(name, []).append(value)
    return Query(params)


def check_text(text: str, what: str, max_bytes: int) -> int:
    """``text`` must be valid Unicode (no lone surrogates, which JSON ``\\ud800`` escapes can
    produce) and at most ``max_bytes`` in UTF-8: else 400 or 413. Returns its size."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(400, f"the {what} is not valid Unicode (lone surrogate)") from None
    if size > max_bytes:
        raise ApiError(
            413, f"the {what} is {size} bytes; the limit is {max_bytes}", limit=max_bytes
        )
    return size


def parse_key(key: str, max_key_bytes: int) -> str:
    """A key from the (already decoded) path: non-empty, at most ``max_key_bytes``."""
    if not key:
        raise ApiError(400, "the key must not be empty")
    check_text(key, "key", max_key_bytes)
    return key


def read_body(request: IRequest, max_bytes: int) -> bytes:
    """The request body, read with a bound: 413 when it is larger than ``max_bytes``.
    ``BoundedRequest`` has already refused to store such a body; with a plain Twisted
    request the body sits in a temporary file and only the bound is read."""
    if getattr(request, "body_too_large", False):
        raise body_too_large(max_bytes)
    length = request.getHeader(b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise body_too_large(max_bytes)
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data = content.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise body_too_large(max_bytes)
    return data


def body_too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, f"the request body is larger than {max_bytes} bytes", limit=max_bytes
    )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ApiError(400, f"field {name!r} appears twice in the JSON body")
        result[name] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ApiError(400, f"{name} is not valid JSON")


def load_json(raw: bytes) -> Any:
    """A strict JSON document: UTF-8, no duplicate fields, no NaN/Infinity; else 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not valid UTF-8") from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None


# Built once: ``json.loads`` with hooks builds a decoder per call (a few % of a write).
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


# A body field's check: (JSON value, field name) -> the checked value, or ApiError (400).
Field = Callable[[Any, str], Any]


def text_field(value: Any, name: str) -> str:
    """A string (its size is checked where its limit is known)."""
    if not isinstance(value, str):
        raise ApiError(400, f"field {name!r} must be a string")
    return value


def integer_field(value: Any, name: str, minimum: int = 0) -> int:
    """A JSON integer (not a boolean, not 1.0) from ``minimum`` to the largest revision."""
    if (not isinstance(value, int) or isinstance(value, bool)
            or not minimum <= value <= _MAX_REVISION):
        raise ApiError(400, f"field {name!r} must be an integer of at least {minimum}")
    return value


def id_field(value: Any, name: str) -> int:
    """A lease id or a fencing token: a positive JSON integer."""
    return integer_field(value, name, 1)


def duration_field(value: Any, name: str) -> float:
    """Seconds as a JSON number, or a duration string as ``parse_duration`` reads it."""
    if isinstance(value, str):
        return parse_duration(value, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ApiError(
        400, f"field {name!r} must be a number of seconds or a duration such as 30s",
        parameter=name,
    )


def parse_body(raw: bytes, allowed: Iterable[str] | Mapping[str, Field]) -> dict[str, Any]:
    """An optional JSON object body whose fields are among ``allowed``: names of string
    fields, or a mapping of names to their ``Field`` checks (the values returned are the
    checked ones).

    An empty (or all-whitespace) body is no body: ``{}``. Any content type is accepted, so
    ``curl -d`` works without ``-H``. Unknown fields are refused so typos do not pass.
    """
    fields: Mapping[str, Field] = (
        allowed if isinstance(allowed, Mapping) else dict.fromkeys(allowed, text_field)
    )
    if not raw.strip():
        return {}
    document = load_json(raw)
    if not isinstance(document, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = sorted(set(document) - set(fields))
    if unknown:
        raise ApiError(
            400,
            f"unknown field(s) in the JSON body: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(fields)) or 'none'}",
        )
    return {name: fields[name](value, name) for name, value in document.items()}


def parse_consistency(query: Query) -> str:
    """``linearizable`` (the default) or ``stale``, as the service takes it."""
    value = query.single("consistency")
    if value is None or value == CONSISTENCY_LINEARIZABLE:
        return CONSISTENCY_LINEARIZABLE
    if value == CONSISTENCY_STALE:
        return CONSISTENCY_STALE
    raise ApiError(
        400, f"unknown consistency {value!r}; use 'linearizable' (default) or 'stale'"
    )


def parse_limit(query: Query, max_page_size: int) -> int | None:
    """Page size: a decimal integer from 1 to ``max_page_size``; None (the service's
    default) when absent."""
    value = query.single("limit")
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= max_page_size:
        raise ApiError(
            400, f"limit must be an integer from 1 to {max_page_size}, not {value!r}"
        )
    return int(value)


def parse_bool(query: Query, name: str) -> bool | None:
    """``true`` or ``false`` exactly; None when absent."""
    value = query.single(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise ApiError(400, f"{name} must be 'true' or 'false', not {value!r}", parameter=name)
    return value == "true"


def parse_revision(text: str | None, name: str, minimum: int = 1) -> int | None:
    """A revision given as decimal digits, at least ``minimum``; None when absent."""
    if text is None:
        return None
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= _MAX_REVISION:
        raise ApiError(
            400, f"{name} must be an integer of at least {minimum}, not {text!r}",
            parameter=name,
        )
    return int(text)


def parse_duration(text: str, name: str) -> float:
    """A duration in seconds: ``30s``, ``500ms``, ``2m`` or seconds as a number."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ApiError(
            400, f"{name} must be a duration such as 30s, 500ms or 2m, not {text!r}",
            parameter=name,
        )
    whole, fraction, unit = match.groups()
    return float(f"{whole}.{fraction or 0}") * _SECONDS_PER_UNIT[unit]


def parse_lease_id(text: str) -> int:
    """A lease id from the path: a positive decimal integer, else 400."""
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= _MAX_REVISION:
        raise ApiError(400, f"a lease id is a positive integer, not {text!r}")
    return int(text)


def parse_timeout(text: str | None, default: float, maximum: float) -> float:
    """A duration (``parse_duration``) of at most ``maximum`` seconds; ``default`` when
    absent."""
    if text is None:
        return default
    seconds = parse_duration(text, "timeout")
    if seconds > maximum:
        raise ApiError(
            400, f"timeout must be at most {maximum:g}s, not {text!r}", parameter="timeout"
        )
    return seconds


def _seconds(value: float) -> str:
    """Seconds as people write them: ``2592000s``, ``2.5s``."""
    return f"{int(value)}s" if value == int(value) else f"{value}s"


def check_ttl(seconds: float, limits: ServiceLimits) -> float:
    """A lease's TTL must lie in ``min_lease_ttl..max_lease_ttl`` (400 otherwise): the
    HTTP layer says so before asking the leader."""
    if not limits.min_lease_ttl <= seconds <= limits.max_lease_ttl:
        raise ApiError(
            400,
            f"ttl must be from {_seconds(limits.min_lease_ttl)} to "
            f"{_seconds(limits.max_lease_ttl)}, not {_seconds(seconds)}",
            parameter="ttl",
        )
    return seconds


def check_name(name: str, what: str, max_name_bytes: int) -> str:
    """A lock's or an election's name: non-empty, without ``/`` (it is one level of the
    keys ``_lock/{name}/{lease}``), valid Unicode, at most ``max_name_bytes``; else 400."""
    if not name:
        raise ApiError(400, f"the {what} name must not be empty")
    if "/" in name:
        raise ApiError(400, f"the {what} name must not contain '/', not {name!r}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(400, f"the {what} name is not valid Unicode (lone surrogate)") from None
    if size > max_name_bytes:
        raise ApiError(
            400, f"the {what} name is {size} bytes; the limit is {max_name_bytes}",
            limit=max_name_bytes,
        )
    return name


def parse_fence(text: str | None, max_name_bytes: int) -> Fence | None:
    """``NAME:TOKEN`` (``?fence=``): the write applies only while lock NAME is held with
    fencing token TOKEN. The name may itself contain ``:``; the token is what follows the
    last one. None when absent; 400 when malformed."""
    if text is None:
        return None
    name, sep, token = text.rpartition(":")
    if not sep or not name or not _DIGITS.fullmatch(token) or not 1 <= int(token) <= _MAX_REVISION:
        raise ApiError(
            400, f"fence must be NAME:TOKEN (a lock's name and its positive fencing token), "
                 f"not {text!r}",
            parameter="fence",
        )
    try:
        check_name(name, "lock", max_name_bytes)
    except ApiError as e:
        raise ApiError(400, f"fence: {e.message}", parameter="fence") from None
    return Fence(f"{LOCK_PREFIX}{name}/", int(token))


def single_header(request: IRequest, name: bytes) -> str | None:
    """A header given at most once, in ASCII (400 otherwise); None when absent."""
    values = request.requestHeaders.getRawHeaders(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"header {name.decode()} is given more than once")
    try:
        return values[0].decode("ascii").strip()
    except UnicodeDecodeError:
        raise ApiError(400, f"header {name.decode()} is not ASCII") from None


def parse_revision_tag(text: str) -> int:
    """An ETag as this API issues it, ``"<revision>"``; bare digits are tolerated."""
    tag = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    if not _DIGITS.fullmatch(tag) or not 1 <= int(tag) <= _MAX_REVISION:
        raise ApiError(
            400,
            'If-Match must be one revision ETag such as "42"; '
            "weak tags, lists and * are not supported",
        )
    return int(tag)


def parse_condition(
    request: IRequest, prev: str | None, max_value_bytes: int
) -> Condition | None:
    """The write's condition from ``prev`` (query or body), ``If-Match`` and
    ``If-None-Match``; at most one may be given (400 otherwise)."""
    if_match = single_header(request, b"if-match")
    if_none_match = single_header(request, b"if-none-match")
    given = [x for x in (prev, if_match, if_none_match) if x is not None]
    if len(given) > 1:
        raise ApiError(
            400, "give at most one condition: prev, If-Match or If-None-Match"
        )
    if prev is not None:
        check_text(prev, "prev value", max_value_bytes)
        return Condition(prev_value=prev)
    if if_match is not None:
        return Condition(prev_revision=parse_revision_tag(if_match))
    if if_none_match is not None:
        if if_none_match != "*":
            raise ApiError(400, "If-None-Match supports only * (write only if absent)")
        return Condition(must_be_absent=True)
    return None
