"""Twisted TCP between Raft nodes.

``RaftTransport`` is the node's only view of the network::

    transport = RaftTransport(reactor, node_id="n1", http_address="10.0.0.1:8080",
                              peers={"n2": ("10.0.0.2", 16990), ...},
                              incarnation=identity.incarnation, pins=peer_pins,
                              on_message=node.receive,             # (msg, sender_http_address)
                              on_peer_unreachable=node.unreachable)  # (peer_id)
    transport.listen(16990)   # accept peers, and start dialing them
    transport.send(msg)       # fire and forget to msg.dst; never raises, never blocks
    transport.update_peers({...})  # membership changed: dial new peers, drop removed ones
    yield transport.stop()    # bounded: aborts what does not close within close_timeout

Frames are 4-byte big-endian length-prefixed ``Envelope`` protobufs (``leifdb.wire``); one
outbound connection per peer, redialed with exponential backoff and jitter; the first frame
is a ``Hello`` (with the sender's data directory incarnation, checked against ``pins``).
Misbehaving connections are closed with one log line; the rest go on.
"""

from leifdb.transport.transport import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_QUEUED_BYTES,
    IncarnationPins,
    RaftTransport,
    TransportStats,
    incarnation_refused,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_QUEUED_BYTES",
    "IncarnationPins",
    "RaftTransport",
    "TransportStats",
    "incarnation_refused",
]
