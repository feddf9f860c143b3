"""``twistd`` whose node listens for Raft on another port than the one it advertises, so a
node started with ``--join`` can sit behind its front proxy (``tests.faults.proxy``) like
the others: ``--join`` advertises ``--host:--raft-port`` and listens there, and the member
list the cluster keeps in its log must name the proxy.

Run as ``python -m tests.faults.proxied_twistd --listen-raft-port PORT <twistd arguments>``
(``ProxiedCluster`` does, for the nodes it adds).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Mapping

from twisted.scripts.twistd import run

from leifdb import config, tap
from leifdb.nodeconfig import NodeConfig

USAGE = "usage: python -m tests.faults.proxied_twistd --listen-raft-port PORT <twistd args>"


def listening_on(port: int) -> Any:
    """``build_config`` whose result listens for Raft on ``port``."""
    build = config.build_config

    def build_config(options: Mapping[str, str | None], environ: Mapping[str, str]) -> NodeConfig:
        return dataclasses.replace(build(options, environ), raft_listen_port=port)

    return build_config


def main(argv: list[str]) -> int | None:
    if len(argv) < 2 or argv[0] != "--listen-raft-port" or not argv[1].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    patched = listening_on(int(argv[1]))
    config.build_config = patched  # Options.postOptions
    tap.build_config = patched  # makeService
    sys.argv = ["twistd", *argv[2:]]
    return run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
