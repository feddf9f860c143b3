# A LeifDB node. Build: `docker build -t leifdb .`; a 3-node cluster: `docker compose up`.
#
# The node is configured entirely by LEIFDB_* environment variables, the same as the
# flags of `twistd leifdb --help` (LEIFDB_MODE, LEIFDB_MEMBER_NODES, LEIFDB_NAME,
# LEIFDB_HOST, LEIFDB_JOIN, LEIFDB_CLUSTER_ID, ...). twistd runs in the foreground as
# PID 1, logging to stdout, so `docker stop` (SIGTERM) makes a leader hand over and the
# node stop cleanly. tests/test_docker_files.py checks this file against the options the
# node accepts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what running needs (no test extras); the plugin cache is built while root may
# write it, so twistd finds the leifdb plugin at once.
WORKDIR /src
COPY . .
RUN pip install . \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && useradd --system --uid 10001 --home-dir /var/lib/leifdb --shell /usr/sbin/nologin leifdb \
    && mkdir -p /var/lib/leifdb \
    && chown leifdb:leifdb /var/lib/leifdb \
    && rm -rf /src

ENV LEIFDB_HTTP_PORT=8080 \
    LEIFDB_RAFT_PORT=16990 \
    LEIFDB_DATA_DIR=/var/lib/leifdb

EXPOSE 8080 16990
VOLUME ["/var/lib/leifdb"]
USER leifdb
WORKDIR /var/lib/leifdb

# Healthy while the node knows a leader it heard from recently (GET /health answers 200).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['LEIFDB_HTTP_PORT'], timeout=2)"]

ENTRYPOINT ["twistd", "-n", "--pidfile=", "leifdb"]
