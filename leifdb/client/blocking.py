"""The blocking client, for scripts and the ``leifdb`` command: the standard library's
``http.client`` running the generators of ``leifdb.client.protocol``. A lease's
background keepalives (``LeaseKeeper``) run on a thread of their own."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from leifdb.client.cluster import (
    add_member_request, members_steps, promote_member_request, remove_member_request,
    transfer_leader_request,
)
from leifdb.client.coordination import (
    ObserveCursor, Renewed, campaign_request, grant_request, keepalive_request, keepalive_steps,
    leader_request, lease_info_request, leases_request, lock_holder_request, lock_request,
    proclaim_request, resign_request, revoke_request,
)
from leifdb.client.protocol import (
    USER_AGENT, ConnectFailed, Emit, Endpoints, FenceLike, NoAnswer, Open, Read, Response,
    RetryPolicy, Send, Sleep, WatchCursor, delete_request, execute, get_request,
    health_request, list_request, put_request, txn_request, watch_steps,
)
from leifdb.client.snapshot import (
    SnapshotInfo, SnapshotTarget, SnapshotWriter, snapshot_request, snapshot_steps,
)
from leifdb.client.types import (
    Event, Holder, Item, LeaderChange, Lease, Members, Page, Status, TxnResult, WriteResult,
)

__all__ = ["Client", "LeaseKeeper", "Observer", "Watch"]

WATCH_READ_TIMEOUT = 15.0  # the server sends a progress bookmark every 5 s


def _connect(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        raise ConnectFailed(f"cannot connect: {e}") from None
    return conn


def _send(conn: http.client.HTTPConnection, action: Send | Open) -> http.client.HTTPResponse:
    request = action.request
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **dict(request.headers)}
    try:
        conn.request(request.method, request.target, body=request.body, headers=headers)
        return conn.getresponse()
    except (OSError, http.client.HTTPException) as e:
        raise NoAnswer(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None


def _headers(resp: http.client.HTTPResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.getheaders()}


def send_once(action: Send | Open) -> Response:
    """Do a ``Send``: one connection, one request, the whole answer."""
    conn = _connect(action.url, action.timeout)
    try:
        resp = _send(conn, action)
        try:
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise NoAnswer(f"answer cut short: {e!r}") from None
        return Response(resp.status, _headers(resp), body)
    finally:
        conn.close()


class Client:
    """A blocking LeifDB client.

    ``endpoints``: ``["http://host:port", ...]`` or ``"h1:p1,h2:p2"``. Writes go to the
    leader (learned from redirects); linearizable reads too; ``stale=True`` reads are
    served by whichever endpoint answers. See ``leifdb.client.protocol`` for the retry
    policy; ``sleep``, ``policy`` (its ``rng`` and ``clock``) and ``transport`` can be
    replaced for tests."""

    def __init__(self, endpoints: Iterable[str] | str | None = None, *, timeout: float = 10.0,
                 policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 transport: Callable[[Send], Response] = send_once) -> None:
        self.endpoints = Endpoints(endpoints)
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._transport = transport

    def _drive(self, steps: Any, sleep: Callable[[float], Any] | None = None,
               on_renewed: Callable[[Lease], None] | None = None,
               stopped: Callable[[], bool] | None = None) -> Any:
        """Do the I/O a ``Send``/``Sleep`` generator asks for; its return value (None once
        ``stopped()`` is true)."""
        sleep = sleep or self._sleep
        reply: Any = None
        try:
            while stopped is None or not stopped():
                action = steps.send(reply)
                reply = None
                if isinstance(action, Sleep):
                    sleep(action.seconds)
                elif isinstance(action, Renewed):
                    if on_renewed is not None:
                        on_renewed(action.lease)
                else:
                    try:
                        reply = self._transport(action)
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
        except StopIteration as done:
            return done.value
        return None

    def _run(self, request: Any, url: str | None = None) -> Any:
        return self._drive(execute(request, self.endpoints, self.policy, self.timeout, url))

    # --- the API -----------------------------------------------------------------------

    def get(self, key: str, *, stale: bool = False) -> Item | None:
        """The key, or None if it is absent."""
        return self._run(get_request(key, stale=stale))

    def put(self, key: str, value: str, *, prev: str | None = None,
            if_match: int | None = None, create: bool = False, lease: int = 0,
            ttl: float | str | None = None,
            fence: FenceLike | None = None) -> WriteResult:
        """Write ``key``; with a condition (at most one), ``ConditionFailed`` if it does
        not hold: ``prev`` (current value), ``if_match`` (current revision), ``create``
        (only if absent). ``lease``: attach the key to that lease (``LeaseNotFound`` if it
        is gone); ``ttl`` (seconds or ``"30s"``): grant a lease for this key alone
        (``WriteResult.lease`` is its id); ``fence`` (a lock's ``Holder``, ``"NAME:TOKEN"``
        or ``(name, token)``): only while that lock is held with that token, else
        ``Fenced``."""
        return self._run(put_request(key, value, prev=prev, if_match=if_match, create=create,
                                     lease=lease, ttl=ttl, fence=fence))

    def delete(self, key: str, *, prev: str | None = None, if_match: int | None = None,
               fence: FenceLike | None = None) -> WriteResult:
        return self._run(delete_request(key, prev=prev, if_match=if_match, fence=fence))

    # --- leases ----------------------------------------------------------------------------

    def grant(self, ttl: float | str) -> Lease:
        """A new lease of ``ttl`` seconds (or ``"30s"``, ``"2m"``); keys attached to it are
        deleted when it expires or is revoked."""
        return self._run(grant_request(ttl))

    def keepalive(self, lease_id: int) -> Lease:
        """Renew the lease once (a write: ``OutcomeUnknown`` is possible);
        ``LeaseNotFound`` if it is gone."""
        return self._run(keepalive_request(lease_id))

    def lease_info(self, lease_id: int) -> Lease:
        """The lease with its attached keys; ``LeaseNotFound`` if it is gone."""
        return self._run(lease_info_request(lease_id))

    def leases(self) -> list[Lease]:
        return self._run(leases_request())

    def revoke(self, lease_id: int) -> WriteResult:
        """Delete the lease and every key attached to it, at the returned revision."""
        return self._run(revoke_request(lease_id))

    def keep_alive(self, lease: Lease | int, *, interval: float | None = None,
                   on_renew: Callable[[Lease], None] | None = None) -> LeaseKeeper:
        """Keep ``lease`` alive on a background thread until ``close()`` (or the end of a
        ``with`` block); see ``LeaseKeeper``."""
        return LeaseKeeper(self, lease, interval=interval, on_renew=on_renew)

    # --- locks and elections -----------------------------------------------------------

    def lock(self, name: str, lease: int, *, value: str = "",
             timeout: float | str | None = None) -> Holder:
        """Wait (first come, first served) until ``lease`` holds lock ``name``: its
        ``Holder`` (``token`` is the fencing token). ``LockTimeout`` after ``timeout``
        seconds (default 60); the lock is released by ``unlock`` or when the lease ends."""
        return self._run(lock_request(name, lease, value=value, timeout=timeout))

    def unlock(self, holder: Holder) -> WriteResult:
        return self.delete(holder.key)

    def lock_holder(self, name: str, *, stale: bool = False) -> Holder | None:
        """Who holds lock ``name`` (None: free)."""
        return self._run(lock_holder_request(name, stale=stale))

    def campaign(self, name: str, lease: int, value: str, *,
                 timeout: float | str | None = None) -> Holder:
        """Wait until ``lease`` leads election ``name`` with ``value``; ``LockTimeout``
        after ``timeout`` seconds (default 60). Leadership ends with ``resign`` or with the
        lease."""
        return self._run(campaign_request(name, lease, value, timeout=timeout))

    def leader(self, name: str, *, stale: bool = False) -> Holder | None:
        """Election ``name``'s leader (None: no leader)."""
        return self._run(leader_request(name, stale=stale))

    def proclaim(self, name: str, token: int, value: str) -> Holder:
        """The leader with ``token`` announces ``value``; ``NotHolder`` if it no longer
        leads."""
        return self._run(proclaim_request(name, token, value))

    def resign(self, name: str, token: int) -> WriteResult:
        """The leader with ``token`` steps down; ``NotHolder`` if it no longer leads."""
        return self._run(resign_request(name, token))

    def observe(self, name: str, *, stale: bool = False,
                read_timeout: float = WATCH_READ_TIMEOUT) -> Observer:
        """Iterate over election ``name``'s leaders (``LeaderChange``): the current one at
        once, then every change of leader or of its value. Reconnects by itself (a
        stream silent for ``read_timeout`` is reopened; the leader it starts with is not
        handed over again if unchanged). ``stale``: from any node's own state."""
        return Observer(self, ObserveCursor(name, stale=stale), read_timeout)

    def list_page(self, prefix: str = "", *, start_after: str | None = None,
                  limit: int | None = None, stale: bool = False) -> Page:
        return self._run(list_request(prefix, start_after=start_after, limit=limit,
                                      stale=stale))

    def list(self, prefix: str = "", *, stale: bool = False,
             limit: int | None = None) -> list[Item]:
        """Every key under ``prefix`` (all pages; at most ``limit`` items if given).
        Pages after the first are separate reads."""
        items: list[Item] = []
        start_after = None
        while True:
            page = self.list_page(prefix, start_after=start_after, stale=stale,
                                  limit=min(1000, limit - len(items)) if limit else None)
            items.extend(page.items)
            if not page.more or not page.next_start_after or \
                    (limit is not None and len(items) >= limit):
                return items
            start_after = page.next_start_after

    def txn(self, txn: dict[str, Any] | None = None, *, compare: list | None = None,
            success: list | None = None, failure: list | None = None,
            stale: bool = False) -> TxnResult:
        """A transaction: the ``POST /txn`` body as a dict, or its three lists."""
        body = dict(txn) if txn is not None else {
            "compare": compare or [], "success": success or [], "failure": failure or []}
        return self._run(txn_request(body, stale=stale))

    def status(self, endpoint: str | None = None) -> Status:
        """``GET /health`` of one endpoint (the first one by default), without retries."""
        url = endpoint or self.endpoints.urls[0]
        return self._run(health_request(), url=url)

    # --- the cluster ----------------------------------------------------------------------

    def members(self) -> Members:
        """The members, from the leader when it can be reached (only its answer has
        ``match_index`` and ``last_contact_seconds``), else from any node."""
        return self._drive(members_steps(self.endpoints, self.policy, self.timeout))

    def add_member(self, member_id: str, raft_address: str, http_address: str = "") -> Members:
        """Add a learner; the new member list once the change is applied. Raises
        ``MembershipRefused`` (409: why in the message) or ``OutcomeUnknown``."""
        return self._run(add_member_request(member_id, raft_address, http_address))

    def promote_member(self, member_id: str) -> Members:
        """Make a caught-up learner a voter; ``MemberNotFound``, ``MembershipRefused``."""
        return self._run(promote_member_request(member_id))

    def remove_member(self, member_id: str, *, force: bool = False) -> Members:
        """Remove a member (the leader too). ``force``: even if fewer than a quorum of the
        remaining voters are reachable."""
        return self._run(remove_member_request(member_id, force=force))

    def transfer_leader(self, to: str) -> str:
        """Hand leadership to voter ``to``; the new leader's id once it leads."""
        return self._run(transfer_leader_request(to))

    def statuses(self) -> list[Status | Exception]:
        """The status of every endpoint, or the error it gave."""
        out: list[Status | Exception] = []
        for url in self.endpoints.urls:
            try:
                out.append(self.status(url))
            except Exception as e:  # noqa: BLE001 - reported per endpoint
                out.append(e)
        return out

    # --- backups -------------------------------------------------------------------------

    def snapshot(self, dest: SnapshotTarget, *, stale: bool = False) -> SnapshotInfo:
        """Download a snapshot of every key and lease (a backup) into ``dest``: a path,
        replaced atomically once the whole snapshot checked out, or an open binary file.
        Linearizable unless ``stale``. ``SnapshotCorrupt`` if it does not match the length
        and CRC-32C announced, ``Unavailable`` if cut short (nothing kept at the path
        either way). See ``leifdb.client.snapshot``."""
        writer = SnapshotWriter(dest)
        steps = snapshot_steps(snapshot_request(stale=stale), self.endpoints, self.policy,
                               self.timeout)
        try:
            info = self._download(steps, writer)
        except BaseException:
            writer.discard()
            raise
        writer.commit()
        return info

    def _download(self, steps: Any, writer: SnapshotWriter) -> SnapshotInfo:
        """Do the I/O of ``snapshot_steps``: one connection per ``Open``."""
        conn: http.client.HTTPConnection | None = None
        resp: http.client.HTTPResponse | None = None
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                reply = None
                if isinstance(action, Open):
                    if conn is not None:
                        conn.close()
                        conn = resp = None
                    try:
                        conn = _connect(action.url, action.timeout)
                        resp = _send(conn, action)
                        body = b"" if resp.status == 200 else resp.read()
                        reply = Response(resp.status, _headers(resp), body)
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
                    except (OSError, http.client.HTTPException) as e:
                        reply = NoAnswer(repr(e))
                elif isinstance(action, Read):
                    try:
                        reply = resp.read1(65536) if resp is not None else b""
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        reply = NoAnswer(repr(e))
                elif isinstance(action, Emit):
                    for chunk in action.events:
                        writer.write(chunk)
                elif isinstance(action, Sleep):
                    self._sleep(action.seconds)
        except StopIteration as done:
            return done.value
        finally:
            steps.close()
            if conn is not None:
                conn.close()

    def watch(self, key: str, *, prefix: bool = False, prev: bool = False,
              start_revision: int | None = None, stale: bool = False,
              read_timeout: float = WATCH_READ_TIMEOUT) -> Watch:
        """Iterate over the changes of ``key`` (or of every key under it with
        ``prefix=True``) from ``start_revision`` (default: from now). Reconnects by
        itself; raises ``Compacted`` if the position left the node's history."""
        cursor = WatchCursor(key, prefix=prefix, prev=prev, start_revision=start_revision,
                             stale=stale)
        return Watch(self, cursor, read_timeout)


class Watch:
    """An iterator of ``Event``; ``revision`` is the last revision fully seen (events or
    progress bookmarks). ``close()`` (or leaving a ``with`` block) ends it."""

    def __init__(self, client: Client, cursor: WatchCursor | ObserveCursor,
                 read_timeout: float) -> None:
        self._client = client
        self.cursor = cursor
        self._read_timeout = read_timeout
        self._iter = self._events()

    @property
    def revision(self) -> int | None:
        return self.cursor.revision

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return next(self._iter)

    def close(self) -> None:
        self._iter.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _events(self) -> Iterator[Any]:
        client = self._client
        steps = watch_steps(self.cursor, client.endpoints, client.policy, client.timeout)
        conn: http.client.HTTPConnection | None = None
        resp: http.client.HTTPResponse | None = None
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                reply = None
                if isinstance(action, Open):
                    if conn is not None:
                        conn.close()
                        conn = resp = None
                    try:
                        conn = _connect(action.url, action.timeout)
                        resp = _send(conn, action)
                        if resp.status == 200:
                            conn.sock.settimeout(self._read_timeout)
                            reply = Response(200, _headers(resp))
                        else:
                            reply = Response(resp.status, _headers(resp), resp.read())
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
                    except (OSError, http.client.HTTPException) as e:
                        reply = NoAnswer(repr(e))
                elif isinstance(action, Read):
                    try:
                        reply = resp.read1(65536) if resp is not None else b""
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        reply = NoAnswer(repr(e))
                elif isinstance(action, Emit):
                    for event in action.events:
                        yield event
                elif isinstance(action, Sleep):
                    client._sleep(action.seconds)
        finally:
            steps.close()
            if conn is not None:
                conn.close()




class Observer(Watch):
    """An iterator of ``LeaderChange`` (``Client.observe``); ``close()`` or leaving a
    ``with`` block ends it."""

    def __next__(self) -> LeaderChange:  # type: ignore[override]
        return next(self._iter)

    def __enter__(self) -> Observer:
        return self


class LeaseKeeper:
    """Keeps a lease alive on a daemon thread (``Client.keep_alive``): a keepalive at once,
    then every ``interval`` (a third of the TTL by default), retried within the TTL when
    the cluster is unreachable or the outcome unknown (see
    ``leifdb.client.coordination.keepalive_steps``).

    The lease's loss is surfaced, never hidden: once the cluster says it is gone
    (``LeaseNotFound``) or no keepalive was acknowledged within its TTL (``LeaseExpired``),
    renewing stops, ``lost`` holds the error, ``check()`` raises it and ``wait()`` returns
    it. ``close()`` stops renewing (it does not revoke the lease). ``lease`` is the last
    renewal's answer."""

    def __init__(self, client: Client, lease: Lease | int, *, interval: float | None = None,
                 on_renew: Callable[[Lease], None] | None = None) -> None:
        self._client = client
        self.lease_id = lease.id if isinstance(lease, Lease) else int(lease)
        self.lease: Lease | None = lease if isinstance(lease, Lease) else None
        self.lost: Exception | None = None
        self._on_renew = on_renew
        self._stop = threading.Event()
        self._done = threading.Event()
        self._steps = keepalive_steps(
            self.lease_id, client.endpoints, client.policy, client.timeout, interval=interval,
            remaining=lease.remaining if isinstance(lease, Lease) else None)
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"leifdb-keepalive-{self.lease_id}")
        self._thread.start()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def _renewed(self, lease: Lease) -> None:
        self.lease = lease
        if self._on_renew is not None:
            self._on_renew(lease)

    def _loop(self) -> None:
        try:
            self._client._drive(self._steps, self._stop.wait, self._renewed,
                                self._stop.is_set)
        except Exception as e:  # noqa: BLE001 - surfaced through lost/check/wait
            self.lost = e
        finally:
            self._steps.close()
            self._done.set()

    def wait(self, timeout: float | None = None) -> Exception | None:
        """Block until renewing stopped (or ``timeout`` passed): the loss, or None."""
        self._done.wait(timeout)
        return self.lost

    def check(self) -> None:
        """Raise the loss of the lease, if it was lost."""
        if self.lost is not None:
            raise self.lost

    def close(self, timeout: float | None = None) -> None:
        """Stop renewing; waits for an in-flight keepalive up to ``timeout`` (default the
        client's request timeout)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(self._client.timeout + 1 if timeout is None else timeout)

    def __enter__(self) -> LeaseKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
