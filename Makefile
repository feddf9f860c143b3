# LeifDB. `make run` and `make test` do all set-up on a fresh machine (Python 3.11 and make).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
# The source tree wins over the installed copy, so edits need no reinstall.
export PYTHONPATH := $(CURDIR)

HTTP_PORT ?= 8080
RAFT_PORT ?= 16990
DURATION ?= 10m
SEED ?=
PROFILE_WORKLOAD ?= write
PROFILE_SECONDS ?= 10

.PHONY: all build run test proto soak bench profile cluster cluster-status cluster-stop chaos clean

all: clean build test

# Two stamps: running needs only the package; the tests add the dev extras on top.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q .
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q '.[dev]'
	touch $@

build: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/twistd -n --pidfile= leifdb --http-port $(HTTP_PORT) --raft-port $(RAFT_PORT)

test: $(STAMP)
	$(PY) -m pytest -q

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=leifdb/wire --pyi_out=leifdb/wire proto/leifdb.proto

soak: $(STAMP)
	$(PY) -m tests.sim.soak --duration $(DURATION)

chaos: $(STAMP)
	$(PY) -m tests.faults.runner --duration $(DURATION) --nodes 5 $(if $(SEED),--seed $(SEED))

# The headline first: LeifDB beside etcd 3.4 under wrk (falls back to LeifDB alone and
# says how to install what is missing).
bench: $(STAMP)
	$(PY) bench/wrk_compare.py --seconds 10 --repeats 2
	$(PY) bench/storage_bench.py
	$(PY) bench/watch_fanout.py --watchers 1000 --rate 20 --seconds 10
	$(PY) bench/lease_bench.py --leases 1000 --concurrency 1,8,32 --seconds 5
	$(PY) bench/lease_expiry.py --runs 5 --failovers 8
	$(PY) bench/membership_bench.py --rolling 3 --failovers 5

# A py-spy profile of the leader (every process of it) under wrk load.
profile: $(STAMP)
	$(PY) bench/profile_leader.py --workload $(PROFILE_WORKLOAD) --seconds $(PROFILE_SECONDS)

cluster: $(STAMP)
	$(PY) -m leifdb.cluster start --nodes 3 --http-base $(HTTP_PORT) --raft-base $(RAFT_PORT)

cluster-status: $(STAMP)
	$(PY) -m leifdb.cluster status

cluster-stop: $(STAMP)
	$(PY) -m leifdb.cluster stop

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
	rm -f twisted/plugins/dropin.cache
