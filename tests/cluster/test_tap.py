"""``leifdb.tap`` in one process, on a fake reactor: start order, fatal start errors as one
line, bounded stop, the exit status after a signal, and the log level filter."""

from __future__ import annotations

import signal

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import FilteringLogObserver, Logger

from leifdb.storage.errors import DataDirLocked
from leifdb.nodelog import filtered_log_observer
from leifdb.tap import (
    ExitStatus,
    HttpService,
    NodeService,
    _settle_exit_status,
)


class FakeNode:
    def __init__(self, start: Deferred, stop: Deferred | None = None,
                 hand_over: Deferred | None = None) -> None:
        self.config = type("Config", (), {"node_id": "n1"})()
        self._start, self._stop = start, stop if stop is not None else succeed(None)
        self._hand_over = hand_over if hand_over is not None else succeed(None)
        self.stopped = False
        self.calls: list[str] = []

    def start(self) -> Deferred:
        return self._start

    def transfer_leadership_before_stop(self) -> Deferred:
        self.calls.append("hand over")
        return self._hand_over

    def stop(self) -> Deferred:
        self.calls.append("stop")
        self.stopped = True
        return self._stop


class RecordingExit(ExitStatus):
    """Records the status instead of arming the real atexit hook."""

    def fail(self, code: int = 1) -> None:
        self.code = code


def services(node: FakeNode, reactor: MemoryReactorClock, fatal: list[str]):
    node_service = NodeService(node, reactor=reactor, on_fatal=fatal.append, stop_timeout=10)
    http = HttpService(node_service, object(), port=8080, interface="127.0.0.1",
                       reactor=reactor, on_fatal=fatal.append)
    return node_service, http


def test_http_listens_only_once_the_node_has_started():
    reactor, fatal, started = MemoryReactorClock(), [], Deferred()
    node_service, http = services(FakeNode(started), reactor, fatal)
    node_service.startService()
    http.startService()
    assert reactor.tcpServers == []
    started.callback(None)
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [
        (8080, "127.0.0.1")]
    assert fatal == []


def test_a_failed_start_is_one_fatal_line_and_http_never_listens():
    reactor, fatal = MemoryReactorClock(), []
    error = DataDirLocked(
        "data directory /d is in use by process 7: is another node running on it?")
    node_service, http = services(FakeNode(fail(error)), reactor, fatal)
    node_service.startService()
    http.startService()
    assert fatal == [
        "cannot start node n1: data directory /d is in use by process 7: is another node "
        "running on it?"]
    assert reactor.tcpServers == []


def test_an_unexpected_start_error_names_its_type():
    reactor, fatal = MemoryReactorClock(), []
    node_service, _ = services(FakeNode(fail(KeyError("x"))), reactor, fatal)
    node_service.startService()
    assert fatal == ["cannot start node n1: KeyError: 'x'"]


def test_an_http_port_in_use_is_fatal():
    class BusyReactor(MemoryReactorClock):
        def listenTCP(self, port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))

    reactor, fatal = BusyReactor(), []
    node_service, http = services(FakeNode(succeed(None)), reactor, fatal)
    node_service.startService()
    http.startService()
    assert len(fatal) == 1 and fatal[0].startswith("cannot serve HTTP: Couldn't listen on")


def test_stop_is_bounded_when_the_node_never_finishes_stopping():
    reactor, fatal = MemoryReactorClock(), []
    node = FakeNode(succeed(None), stop=Deferred())
    node_service, _ = services(node, reactor, fatal)
    node_service.startService()
    done: list[object] = []
    node_service.stopService().addBoth(done.append)
    assert node.stopped and done == []
    reactor.advance(9.9)
    assert done == []
    reactor.advance(0.1)
    assert done == [None] and node_service.clean is False


def test_stop_waits_for_a_start_in_progress_then_stops_the_node():
    reactor, fatal, started = MemoryReactorClock(), [], Deferred()
    node = FakeNode(started)
    node_service, _ = services(node, reactor, fatal)
    node_service.startService()
    done: list[object] = []
    node_service.stopService().addBoth(done.append)
    assert not node.stopped
    started.callback(None)
    assert node.stopped and done == [None] and node_service.clean


def test_a_leader_hands_over_before_it_stops():
    reactor, fatal, handed_over = MemoryReactorClock(), [], Deferred()
    node = FakeNode(succeed(None), hand_over=handed_over)
    node_service, _ = services(node, reactor, fatal)
    node_service.startService()
    done: list[object] = []
    node_service.stopService().addBoth(done.append)
    assert node.calls == ["hand over"] and done == []
    reactor.advance(1.0)
    handed_over.callback("n2")
    assert node.calls == ["hand over", "stop"] and done == [None] and node_service.clean


def test_a_hand_over_that_hangs_gets_half_the_stop_timeout_then_the_node_stops():
    reactor, fatal = MemoryReactorClock(), []
    node = FakeNode(succeed(None), hand_over=Deferred())
    node_service, _ = services(node, reactor, fatal)
    node_service.startService()
    done: list[object] = []
    node_service.stopService().addBoth(done.append)
    reactor.advance(4.9)
    assert node.calls == ["hand over"]
    reactor.advance(0.1)
    assert node.calls == ["hand over", "stop"] and done == [None] and node_service.clean


def test_a_failed_hand_over_does_not_stop_the_stop():
    reactor, fatal = MemoryReactorClock(), []
    node = FakeNode(succeed(None), hand_over=fail(RuntimeError("no voter to hand to")))
    node_service, _ = services(node, reactor, fatal)
    node_service.startService()
    done: list[object] = []
    node_service.stopService().addBoth(done.append)
    assert node.calls == ["hand over", "stop"] and done == [None] and node_service.clean


def test_a_node_that_never_started_neither_hands_over_nor_stops():
    reactor, fatal = MemoryReactorClock(), []
    node = FakeNode(fail(DataDirLocked("in use")))
    node_service, _ = services(node, reactor, fatal)
    node_service.startService()
    node_service.stopService()
    assert node.calls == []


def test_a_clean_stop_after_sigterm_exits_0_and_an_unclean_one_1():
    reactor = MemoryReactorClock()
    node_service, _ = services(FakeNode(succeed(None)), reactor, [])
    status = RecordingExit()
    reactor._exitSignal = signal.SIGTERM
    _settle_exit_status(reactor, node_service, status)
    assert reactor._exitSignal is None and status.code == 0

    node_service.clean = False
    reactor._exitSignal = signal.SIGINT
    _settle_exit_status(reactor, node_service, status)
    assert reactor._exitSignal is None and status.code == 1


def test_log_level_filter_drops_events_below_the_level(capsys):
    observer = filtered_log_observer({"nodaemon": True, "logfile": None}, "warn")
    assert isinstance(observer, FilteringLogObserver)
    log = Logger(namespace="test", observer=observer)
    log.info("quiet info")
    log.warn("loud warning")
    out = capsys.readouterr().out
    assert "loud warning" in out and "quiet info" not in out


def test_no_filter_when_twistd_logs_elsewhere():
    assert filtered_log_observer({"syslog": True}, "warn") is None
    assert filtered_log_observer({"logger": object()}, "warn") is None
    assert filtered_log_observer(None, "warn") is None
