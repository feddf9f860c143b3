"""``leifdb.worker.codec`` and the batching of both ends: frames survive any split,
exceptions come back as the same class with the same attributes (so the HTTP layer maps
them to the same answers), and one reactor turn's calls or replies are one frame."""

from __future__ import annotations

import pickle
import struct
from types import SimpleNamespace

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from leifdb.errors import (
    Compacted,
    InvalidRequest,
    LeaseNotFound,
    LimitExceeded,
    LockTimeout,
    MembershipRefused,
    NotHolder,
    NotLeaderError,
    OutcomeUnknown,
    Unavailable,
)
from leifdb.http.failures import membership_failure, read_failure, write_failure
from leifdb.kv.commands import Item
from leifdb.service.api import ServiceLimits
from leifdb.worker.calls import WorkerSettings
from leifdb.worker.codec import (
    FrameDecoder,
    FrameTooLarge,
    decode_exception,
    encode_exception,
    encode_frame,
)
from leifdb.worker.remote import RemoteService, RpcClient
from leifdb.worker.server import RpcServer


class Foreign(Exception):
    """Not ours, not a builtin: must not be instantiated by the decoder."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.detail = "x"


SERVICE_ERRORS = [
    NotLeaderError("10.0.0.2:8080"),
    NotLeaderError(None),
    Unavailable("no quorum"),
    OutcomeUnknown("leadership lost"),
    Compacted(17),
    LimitExceeded("the value is larger than 5 bytes"),
    InvalidRequest("empty key"),
    LeaseNotFound(9),
    NotHolder("token 3 is not the leader"),
    LockTimeout("backup", "_lock/backup/7"),
    MembershipRefused("no such member n9", 404),
    Unavailable(),
]


def _round_trip(error: BaseException) -> BaseException:
    return decode_exception(pickle.loads(pickle.dumps(encode_exception(error))))


@pytest.mark.parametrize("error", SERVICE_ERRORS, ids=lambda e: f"{type(e).__name__}({e})")
def test_service_errors_come_back_as_themselves(error):
    back = _round_trip(error)
    assert type(back) is type(error)
    assert back.args == error.args and str(back) == str(error)
    assert vars(back) == vars(error)


@pytest.mark.parametrize("error", SERVICE_ERRORS, ids=lambda e: f"{type(e).__name__}({e})")
def test_the_http_layer_answers_a_decoded_error_as_the_original(error):
    request = SimpleNamespace(uri=b"/db/k?x=1")
    for mapping in (read_failure, write_failure, membership_failure):
        want, got = mapping(request, error), mapping(request, _round_trip(error))
        if want is None:
            assert got is None
        else:
            assert (got.status, got.message, got.headers, got.fields) == (
                want.status, want.message, want.headers, want.fields)


def test_builtins_are_rebuilt_and_other_classes_become_runtime_errors():
    back = _round_trip(KeyError("k"))
    assert type(back) is KeyError and back.args == ("k",)
    foreign = _round_trip(Foreign("boom"))
    assert type(foreign) is RuntimeError
    assert str(foreign) == f"{Foreign.__module__}.Foreign: boom"
    not_an_exception = decode_exception(("leifdb.kv.commands", "Item", (), {}))
    assert type(not_an_exception) is RuntimeError


def test_frames_survive_any_split():
    payloads = [("a", 1), [Item("k", "v", 3, 2, 0)] * 3, None, b"\x00" * 70_000]
    data = b"".join(encode_frame(p) for p in payloads)
    for size in (1, 3, 4, 5, 4096, len(data)):
        decoder, got = FrameDecoder(), []
        for start in range(0, len(data), size):
            got += decoder.feed(data[start:start + size])
        assert got == payloads


def test_a_frame_longer_than_allowed_is_refused():
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(struct.pack(">I", 0xFFFFFFFF) + b"x")


def _client(clock: Clock) -> tuple[RpcClient, StringTransport]:
    client = RpcClient(clock, on_settings=lambda s: None, on_lost=lambda: None)
    transport = StringTransport()
    client.makeConnection(transport)
    return client, transport


def test_a_turns_calls_go_out_as_one_frame():
    clock = Clock()
    client, transport = _client(clock)
    remote = RemoteService(client, ServiceLimits())
    for i in range(50):
        remote.get(f"k{i}")
    remote.put("k", "v")
    assert transport.value() == b""  # nothing before the turn ends
    clock.advance(0)
    frames = FrameDecoder().feed(transport.value())
    assert len(frames) == 1
    calls, cancels, note = frames[0]
    assert [c[1] for c in calls] == ["get"] * 50 + ["put"] and cancels == [] and note is None
    assert calls[0][2:] == (("k0", "linearizable"), {})


class RecordingService:
    """Answers every ``get`` with a Deferred the test fires."""

    revision = 41
    limits = ServiceLimits()

    def __init__(self) -> None:
        self.pending: list[Deferred] = []

    def get(self, key: str, consistency: str = "linearizable") -> Deferred:
        self.pending.append(Deferred())
        return self.pending[-1]


def test_replies_fired_in_one_turn_go_out_as_one_frame_with_the_revision():
    clock, service = Clock(), RecordingService()
    server = RpcServer(service, reactor=clock, settings=WorkerSettings(), push_interval=10)
    transport = StringTransport()
    server.makeConnection(transport)
    decoder = FrameDecoder()
    assert decoder.feed(transport.value())[0][2] == WorkerSettings()  # the first frame
    transport.clear()
    server.dataReceived(encode_frame(([(i, "get", (f"k{i}",), {}) for i in range(30)], [], None)))
    service.revision = 42
    for i, d in enumerate(service.pending):
        d.callback(i) if i % 2 else d.errback(NotLeaderError("n2:1"))
    clock.advance(0)
    frames = decoder.feed(transport.value())
    assert len(frames) == 1
    revision, replies, settings = frames[0]
    assert revision == 42 and settings is None and len(replies) == 30
    assert replies[1] == (1, True, 1)
    assert replies[0][:2] == (0, False)
    assert type(decode_exception(replies[0][2])) is NotLeaderError
    assert server.running == 0


def test_a_method_outside_the_calls_is_refused():
    clock = Clock()
    server = RpcServer(RecordingService(), reactor=clock, settings=WorkerSettings(),
                       push_interval=10)
    transport = StringTransport()
    server.makeConnection(transport)
    transport.clear()
    server.dataReceived(encode_frame(([(1, "__init__", (), {})], [], None)))
    clock.advance(0)
    (_, replies, _), = FrameDecoder().feed(transport.value())
    assert replies[0][:2] == (1, False)
    assert "not a service call" in str(decode_exception(replies[0][2]))


def test_the_revision_is_pushed_while_no_reply_goes_out():
    clock, service = Clock(), RecordingService()
    server = RpcServer(service, reactor=clock, settings=WorkerSettings(), push_interval=0.1)
    transport = StringTransport()
    server.makeConnection(transport)
    transport.clear()
    clock.advance(0.1)
    assert transport.value() == b""  # unchanged: nothing to say
    service.revision = 50
    clock.advance(0.1)
    assert FrameDecoder().feed(transport.value()) == [(50, [], None)]
