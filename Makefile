# tq — the two commands: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
EMU := .venv-emu
BIN := $(VENV)/bin
PACKAGES := -e libs/tqcore -e libs/tqdev -e services/gateway -e services/executor -e services/scheduler -e services/reaper
# The machine's pip may add its own constraints; ours come from constraints.txt.
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: install run test lint typecheck unit integration e2e test-ministack test-moto test-moto-adapters test-moto-e2e bench bench-schedule test-downtime chaos lock clean

install: $(VENV)/.installed $(EMU)/.installed

$(VENV)/.installed: constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	touch $@

$(EMU)/.installed: requirements-emulator.txt
	test -x $(EMU)/bin/python || $(PYTHON) -m venv $(EMU)
	$(EMU)/bin/pip --disable-pip-version-check -q install -r requirements-emulator.txt
	touch $@

## make run: set up, start the emulator and the whole stack in the foreground (Ctrl-C stops all of it).
run: install
	$(BIN)/tq-local

## make test: set up and run every test: lint, types, unit, then integration + e2e on ministack and on moto.
# The chaos run (about 4 minutes, on ministack) and moto's adapter tests run side by side: neither asserts
# timings that the other's load could upset (chaos has only its 420 s progress deadline); moto's e2e module,
# which does time a start, runs alone afterwards.
test: install lint typecheck unit test-ministack
	$(MAKE) -j2 --output-sync=target chaos test-moto-adapters
	$(MAKE) test-moto-e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m unit

# Every integration and e2e test on ministack but the chaos run (`make chaos`).
test-ministack: install
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest -m "(integration or e2e) and not chaos" --durations=12

# The second opinion: every adapter (integration) test again on moto, and the submit-to-finish e2e module. Not
# re-run there: volume/chaos (moto's SQS slows down as queues grow), the slow process-timing scenarios, and the e2e
# modules whose AWS calls the adapter tests already cover on moto (schedules, priority, access, auth, cancel, run
# logs, rate limits, mTLS): they keep `make test` within 15 minutes.
MOTO := TQ_TEST_EMULATOR=moto $(BIN)/pytest -m "(integration or e2e) and not volume and not slow"
test-moto: test-moto-adapters test-moto-e2e

test-moto-adapters: install
	$(MOTO) libs/tqcore/tests/integration tests/integration

test-moto-e2e: install
	$(MOTO) tests/e2e/test_submit.py

## make chaos: 2,000 tasks while executors are SIGKILLed every 3 s (also part of `make test`); prints its figures.
chaos: install
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest -m chaos -s

## make bench: submit latency, throughput, submit->start and AWS calls per task on a local stack.
bench: install
	$(BIN)/python bench/throughput.py

## make bench-schedule: 750 tasks due at one instant, two scheduler replicas: lateness, once-only, AWS calls.
bench-schedule: install
	$(BIN)/python bench/schedule_peak.py

## make test-downtime: the scheduler-downtime scenario alone (TQ_TEST_DOWNTIME_S, default 25 s; the issue's 180).
test-downtime: install
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest tests/e2e/test_schedules.py -k catch_up

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt.new
	{ echo '# The one constraints file for the product and its tests: every third-party version, pinned.'; \
	  echo '# Regenerate with: make lock'; cat constraints.txt.new; } > constraints.txt && rm constraints.txt.new

clean:
	rm -rf $(VENV) $(EMU) .pytest_cache .mypy_cache .ruff_cache
