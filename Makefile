# cutover - make migrate | rollback | down | test (see README.md)
SHELL := /bin/bash
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.11.*/bin/python3.11) $(shell command -v python3.11) python3)
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
ANSIBLE_ARGS ?=

.PHONY: docs help venv system-deps up migrate rollback down test lint pytest molecule molecule-e2e molecule-fleet molecule-roles \
        pytest-e2e-fleet clean bench-snapshot bench-rollback load healthy-runs

help:
	@echo "make migrate   set up, start the demo on its legacy release, migrate it (playbooks/migrate.yml)"
	@echo "make rollback  roll the newest migrate run back in six steps (playbooks/rollback.yml)"
	@echo "make down      stop everything the project started"
	@echo "make test      linters, pytest against real redis-server, every Molecule scenario"
	@echo "make bench-snapshot  snapshot modes vs BGSAVE, redis-cli --rdb and a naive redis-py dump (1M keys)"
	@echo "make bench-rollback  time to roll a failed migrate back (mttr, exposure, outage) vs a stop/start floor"
	@echo "make load      steady user traffic at every demo component (LOAD_ARGS='--rate 40 --duration 120'), counted"
	@echo "make healthy-runs  10 healthy migrates of a demo of its own in a row, the last under make load"

$(BIN)/.installed: requirements.txt constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || \
	  { echo "PYTHON must be a Python 3.11 interpreter (got $(PYTHON)); make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $@

venv: $(BIN)/.installed

# redis-server from the distribution's packages; tests and the demo run it themselves on loopback.
system-deps:
	@command -v redis-server >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server redis-tools; }

up: venv system-deps
	$(BIN)/ansible-playbook playbooks/demo_up.yml $(ANSIBLE_ARGS)

migrate: up
	$(BIN)/ansible-playbook playbooks/migrate.yml $(ANSIBLE_ARGS)

rollback: venv
	$(BIN)/ansible-playbook playbooks/rollback.yml $(ANSIBLE_ARGS)

down:
	@if [ -x $(BIN)/ansible-playbook ]; then $(BIN)/ansible-playbook playbooks/demo_down.yml $(ANSIBLE_ARGS); fi

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline --profile production
	$(BIN)/python -m compileall -q library module_utils plugins demo tests

pytest: venv system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

molecule: venv system-deps
	$(BIN)/molecule test --all

# make test runs two streams at once, one per core, of about the same length: pytest, the end-to-end scenario
# (its own env root, see molecule/e2e/molecule.yml) and the fleet (five hosts over SSH); and the per-role
# scenarios. Each stream's output is printed whole when it ends; make stops with an error if either fails.
test: lint system-deps
	@echo "running two streams: pytest + molecule-e2e + molecule-fleet | molecule-roles (output shown as each ends)"
	$(MAKE) --no-print-directory -j2 --output-sync=target pytest-e2e-fleet molecule-roles

molecule-e2e: venv system-deps
	$(BIN)/molecule test -s e2e

molecule-fleet: venv system-deps
	$(BIN)/molecule test -s fleet

molecule-roles: venv system-deps
	$(BIN)/molecule test --all --exclude e2e --exclude fleet

pytest-e2e-fleet: venv system-deps
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory molecule-e2e
	$(MAKE) --no-print-directory molecule-fleet

# The generated parts of docs/ARCHITECTURE.md (the journal event table from module_utils/cutover_events.py).
docs: venv
	$(BIN)/python docs/render.py

clean: down
	rm -rf .run reports .cache/ansible-local

# Snapshot modes against BGSAVE, redis-cli --rdb and a hand-written redis-py dump on 1,000,000 keys (docs/SNAPSHOTS.md).
bench-snapshot: venv system-deps
	$(BIN)/python bench/bench_snapshot.py

# A failed migrate of the demo's five services rolled back, timed from its journal against a plain stop/start
# of them (bench/floor.yml); in a temp dir on free ports of its own, never .run/ or reports/.
bench-rollback: venv system-deps
	$(BIN)/python bench/bench_rollback.py

# Steady user traffic at every component of the inventory's demo (loopback only, bounded, stops by itself),
# counted per component and second into reports/load-<UTC time>.json. E.g. LOAD_ARGS='--rate 20 --duration 60'.
LOAD_ARGS ?=
load: venv
	$(BIN)/python bench/load.py $(LOAD_ARGS)

# 10 migrates legacy -> migrated of a demo of its own (temp dir, free ports), each but the last followed by
# playbooks/rollback.yml; the last under bench/load.py. Fails unless all migrated, 0 keys lost, 0 failed requests.
healthy-runs: venv system-deps
	$(BIN)/python bench/healthy_runs.py
