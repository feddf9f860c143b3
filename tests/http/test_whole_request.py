"""``ApiChannel`` takes a segment holding exactly one plain request in one piece
(``_whole_request``) and leaves everything else to Twisted's line parser: both must answer
alike. Each case is fed once whole and once a byte at a time (which never takes the
shortcut), each to a fresh node, and the bytes written back are compared."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from leifdb.http import make_app, make_site
from leifdb.http.site import ApiChannel
from tests.http.fakes import FakeService

_CLIENT = IPv4Address("TCP", "127.0.0.1", 31337)
_DATE = re.compile(rb"\r\nDate: [^\r]*")
LIMITS = {"max_request_line_bytes": 120, "max_header_bytes": 200, "max_headers": 6,
          "max_body_bytes": 64}


class _Transport(StringTransport):
    """Lenient as a TCP transport is: Twisted's channel may unregister itself as producer
    twice, or resume reading, after it closed the connection (``StringTransport`` raises)."""

    def unregisterProducer(self) -> None:
        self.producer = None

    def _checkState(self) -> None:
        pass


def serve(pieces: list[bytes]) -> bytes:
    """What a fresh node (one key, ``k``) writes back to ``pieces`` fed in order."""
    service = FakeService()
    service.set("k", "v0")
    site = make_site(make_app(service, version="t", **LIMITS), reactor=MemoryReactorClock())
    channel = site.buildProtocol(_CLIENT)
    transport = _Transport()
    channel.makeConnection(transport)
    for piece in pieces:
        if transport.disconnecting:
            break  # as a closed TCP connection delivers nothing more
        channel.dataReceived(piece)
    return _DATE.sub(b"", transport.value())


def whole_and_bytewise(data: bytes) -> tuple[bytes, bytes]:
    return serve([data]), serve([data[i:i + 1] for i in range(len(data))])


METHODS = [b"GET", b"PUT", b"DELETE", b"HEAD", b"POST", b"OPTIONS", b"G@T"]
TARGETS = [b"/db/k", b"/db/k?value=x", b"/db/a%20b?value=x&ttl=5", b"/db/k?consistency=stale",
           b"/db", b"/db?prefix=k", b"/health", b"/nowhere", b"/db/%zz", b"/db/%C3",
           b"http://node/db/k", b"/db/k?bogus=1", b"/db/" + b"x" * 130]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]
FIELDS = [b"Host: node", b"Content-Type: application/json", b"If-None-Match: *",
          b'If-Match: "1"', b"X-A:   padded\t ", b"Connection: close", b"Origin: http://ui",
          b"X-Big: " + b"y" * 150, b"X-N: 1", b"X-N: 2", b"Accept: */*"]
ODD_FIELDS = [b"\tfolded", b"Bad Header", b": empty", b"Content-Length: 5",
              b"Content-Length: abc", b"Content-Length: 999", b"Transfer-Encoding: chunked",
              b"Expect: 100-continue", b"N\x00me: v", b"X: a\rb", b"X: a\x00b", b"X: a\nb",
              b"content-length: 0"]
BODIES = [b"", b'{"value":"v"}', b'{"value":', b'{"prev":"v0"}', b"z" * 80]
NEXT = [b"GET /db/k HTTP/1.1\r\nHost: node\r\n\r\n", b"GET /db/k HTTP/1.1\r\n"]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Mostly requests the shortcut may take (up to past the header count and size
    limits), some with one field only Twisted's parser takes, some with more after."""
    line = b" ".join([draw(st.sampled_from(METHODS)), draw(st.sampled_from(TARGETS)),
                      draw(st.sampled_from(VERSIONS))])
    body = draw(st.sampled_from(BODIES))
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=draw(st.integers(0, 8)),
                           max_size=8))
    if draw(st.booleans()):
        fields.append(b"Content-Length: %d" % len(body))
    odd = draw(st.none() | st.sampled_from(ODD_FIELDS))
    if odd is not None:
        fields.insert(draw(st.integers(0, len(fields))), odd)
    fields = draw(st.permutations(fields))
    head = b"\r\n".join([line, *fields]) + b"\r\n\r\n"
    return head + body + draw(st.sampled_from([b""] * 4 + NEXT))


GET = b"GET /db/k HTTP/1.1\r\n"


@settings(max_examples=300, deadline=None)
@given(requests())
@example(GET + b"Bad Header: v\r\n\r\n")  # not a token: no spaces in a field name
@example(GET + b"N\x00me: v\r\n\r\n")
@example(GET + b"X: a\rb\r\n\r\n")
@example(GET + b"X: a\x00b\r\n\r\n")
@example(GET + b"Content-Length: 0\r\ncontent-length: 0\r\n\r\n")
@example(GET + b"X-N: 1\r\n" * 7 + b"\r\n")  # one field over max_headers
@example(GET + b"X-Big: " + b"y" * 200 + b"\r\n\r\n")  # over max_header_bytes
@example(GET + b"Host: node\r\n folded\r\n\r\n")
@example(b"PUT /db/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 13\r\n\r\n"
         b'{"value":"v"}')
@example(b"PUT /db/k HTTP/1.1\r\nContent-Length: 80\r\n\r\n" + b"z" * 80)  # over the body limit
def test_a_request_taken_whole_is_answered_as_the_line_parser_answers_it(data):
    whole, bytewise = whole_and_bytewise(data)
    assert whole == bytewise


PLAIN_PUT = (b"PUT /db/k HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
             b"Content-Length: 13\r\n\r\n{\"value\":\"v\"}")


def lines_parsed(monkeypatch, pieces: list[bytes]) -> tuple[int, bytes]:
    seen: list[bytes] = []
    original = ApiChannel.lineReceived

    def counting(self, line):
        seen.append(line)
        return original(self, line)

    monkeypatch.setattr(ApiChannel, "lineReceived", counting)
    answer = serve(pieces)
    return len(seen), answer


def test_a_plain_request_in_one_segment_skips_the_line_parser(monkeypatch):
    count, answer = lines_parsed(monkeypatch, [PLAIN_PUT])
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"revision":2' in answer
    assert count == 0


def test_a_split_or_chunked_request_goes_through_the_line_parser(monkeypatch):
    count, answer = lines_parsed(monkeypatch, [PLAIN_PUT[:40], PLAIN_PUT[40:]])
    assert answer.startswith(b"HTTP/1.1 200 ") and count == 5
    chunked = (b"PUT /db/k HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"d\r\n{\"value\":\"v\"}\r\n0\r\n\r\n")
    count, answer = lines_parsed(monkeypatch, [chunked])
    assert answer.startswith(b"HTTP/1.1 200 ") and count >= 4


def test_requests_one_after_another_on_a_connection_each_take_the_shortcut(monkeypatch):
    count, answer = lines_parsed(monkeypatch, [PLAIN_PUT, PLAIN_PUT, PLAIN_PUT])
    assert answer.count(b"HTTP/1.1 200 ") == 3 and b'"revision":4' in answer
    assert count == 0
