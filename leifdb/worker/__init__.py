"""More than one core per node: the client HTTP port served by worker processes.

With ``--workers N`` (N >= 1) the node's process (the consensus process: Raft, storage,
the ``KVService``) binds the client port but never accepts on it. ``WorkerPool`` spawns N
workers (``python -m leifdb.worker``), each inheriting a listening socket of its own on
that port (``SO_REUSEPORT``: the kernel spreads connections over them) and one end of a
Unix socketpair. A worker serves the very resource the node would
(``leifdb.http.make_app`` + ``ApiSite``) over a ``RemoteService``: every Deferred call of
``leifdb.service.api.Service`` goes to the node over the socketpair, batched per reactor
turn, and comes back with its result or its exception (same class, same attributes), so
the HTTP answers are the single-process ones. Routes needing what cannot be a call
(``status()``, ``members()``, watches, snapshots, ``/metrics``) are forwarded, streaming,
to the node's internal HTTP port on 127.0.0.1 (``FORWARDED_ENDPOINTS``).

Modules: ``codec`` (frames, exceptions), ``calls`` (what crosses, the settings),
``server`` (the node's end), ``remote`` (the worker's end and ``RemoteService``),
``forward`` (forwarded routes, the proxy), ``listen`` (the client port, one socket per
worker), ``logs`` (worker log lines into the node's log), ``pool`` (spawn, restart,
drain), ``main`` (the worker process).
"""
