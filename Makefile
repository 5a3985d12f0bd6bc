# tq — the two commands: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
EMU := .venv-emu
CODEGEN := .venv-codegen
EXAMPLES_VENV := .venv-examples
BIN := $(VENV)/bin
PACKAGES := -e 'libs/tq[cli]' -e libs/tqcore -e libs/tqdev -e services/gateway -e services/executor -e services/scheduler -e services/reaper
# The machine's pip may add its own constraints; ours come from constraints.txt.
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: install run test lint typecheck unit examples configuration integration e2e test-ministack test-ministack-core test-core-timed test-core-beside test-core-late test-observability test-console console-screenshots chaos-then-console beside-chaos test-moto test-moto-adapters test-moto-e2e bench bench-batch bench-schedule bench-history bench-console bench-streams bench-memory bench-cost bench-calls test-downtime chaos alerts monitoring infra pants lock clean

install: $(VENV)/.installed $(EMU)/.installed

$(VENV)/.installed: constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	touch $@

$(EMU)/.installed: requirements-emulator.txt
	test -x $(EMU)/bin/python || $(PYTHON) -m venv $(EMU)
	$(EMU)/bin/pip --disable-pip-version-check -q install -r requirements-emulator.txt
	touch $@

# openapi-python-client, which a test runs on the live /openapi.json: its own venv, for its own ruff and typer.
$(CODEGEN)/.installed: requirements-codegen.txt
	test -x $(CODEGEN)/bin/python || $(PYTHON) -m venv $(CODEGEN)
	$(CODEGEN)/bin/pip --disable-pip-version-check -q install -r requirements-codegen.txt
	touch $@

## make run: set up, start the emulator and the whole stack in the foreground (Ctrl-C stops all of it).
# TQ_MONITORING=1 make run: also Prometheus and Alertmanager on loopback, with ops/alerts' rules, scraping the stack.
run: install
	$(if $(filter 1,$(TQ_MONITORING)),scripts/install-monitoring.sh)
	$(BIN)/tq-local

## make test: set up and run every test: lint, types, unit, alert rules, the example handler package, then
## integration + e2e on ministack and moto.
# The chaos runs (about 2-4 minutes for both, on ministack), then the console in a browser, then the core modules that
# time nothing (CORE_LATE) have a second lane beside them: moto's adapter tests, then the observability e2e modules
# on ministack (about 7 minutes). Neither lane asserts timings the other's load could upset (chaos has only its 420 s
# progress deadline; the observability modules count, with deadlines of tens of seconds; the browser tests wait with
# 20 s deadlines).
# moto's e2e module, which does time a start, runs alone afterwards. lint, typecheck, unit and alerts (each one
# process, none timing anything) run two at a time first; the integration tiers, which do time things, never
# run beside them.
test: install $(CODEGEN)/.installed
	$(MAKE) -j2 --output-sync=target lint typecheck unit alerts examples
	$(MAKE) test-ministack-core
	$(MAKE) -j2 --output-sync=target chaos-then-console beside-chaos
	$(MAKE) test-moto-e2e

chaos-then-console: chaos
	$(MAKE) test-console
	$(MAKE) test-core-late

beside-chaos: test-moto-adapters
	$(MAKE) test-observability

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m unit

## make configuration: regenerate docs/CONFIGURATION.md from the settings classes (a unit test fails while it is stale).
configuration: install
	$(BIN)/python -m tqdev.configuration

## make examples: build the example handler package (examples/thumbnails) into a venv of its own that holds the
## tq package and nothing of the executor (as your package would be), then run its tq.testing tests (seconds).
examples: $(EXAMPLES_VENV)/.installed
	$(EXAMPLES_VENV)/bin/pip --disable-pip-version-check -q install --no-deps --force-reinstall ./examples/thumbnails
	$(EXAMPLES_VENV)/bin/pytest -q examples/thumbnails/tests

$(EXAMPLES_VENV)/.installed: constraints.txt libs/tq/pyproject.toml examples/thumbnails/pyproject.toml
	test -x $(EXAMPLES_VENV)/bin/python || $(PYTHON) -m venv $(EXAMPLES_VENV)
	$(EXAMPLES_VENV)/bin/pip --disable-pip-version-check -q install -c constraints.txt -e libs/tq './examples/thumbnails[test]'
	touch $@

# Every integration and e2e test on ministack but the chaos run (`make chaos`): the observability modules
# (metrics, logs, traces, live alerting) and the rest.
OBSERVABILITY_E2E := tests/e2e/test_metrics.py tests/e2e/test_logs.py tests/e2e/test_traces.py tests/e2e/test_alerting.py
test-ministack: test-ministack-core test-core-late test-observability

# Two lanes, each on an emulator of its own: the modules that time things (a start within 1 s of its time,
# retry gaps, schedule cadence, rate limits, crash and shutdown timings) and the volume run, one after another as
# before; beside them the modules with only generous deadlines and little CPU of their own (the adapter tests, lost
# enqueues, poison, throttling, access, auth, mTLS, script fences, listing memory, readiness, executor pools, batch
# submit, the Python client, the tq command line).
CORE := TQ_TEST_EMULATOR=ministack $(BIN)/pytest -m "(integration or e2e) and not chaos and not browser" --durations=8
CORE_BESIDE := libs/tqcore/tests/integration tests/integration \
	tests/e2e/test_access.py tests/e2e/test_auth.py tests/e2e/test_mtls.py tests/e2e/test_script_fences.py \
	tests/e2e/test_listing_memory.py tests/e2e/test_readiness.py \
	tests/e2e/test_buffered_give_back.py tests/e2e/test_pools.py \
	tests/e2e/test_batch.py tests/e2e/test_client.py tests/e2e/test_cli.py
# Modules that time nothing, run in `make test` after the chaos runs and the browser tests (beside moto's adapters
# and the observability modules, the longer lane), to keep the two core lanes short: the schemathesis fuzz, the
# local stack's supervision, your own handler package, the generated client.
CORE_LATE := tests/e2e/test_openapi_fuzz.py tests/e2e/test_local_supervision.py tests/e2e/test_own_handlers.py \
	tests/e2e/test_generated_client.py
test-ministack-core: install
	$(MAKE) -j2 --output-sync=target test-core-timed test-core-beside

test-core-timed: install
	$(CORE) $(addprefix --ignore=,$(OBSERVABILITY_E2E) $(CORE_BESIDE) $(CORE_LATE))

test-core-beside: install
	$(CORE) $(CORE_BESIDE)

# The generated-client module needs the generator's own venv (`make test` builds it first; `make run` never).
test-core-late: install $(CODEGEN)/.installed
	$(CORE) $(CORE_LATE)

# Needs Prometheus and Alertmanager installed, not the rule checks again (`make test` ran `alerts` already).
test-observability: install monitoring
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest -m "e2e" $(OBSERVABILITY_E2E)

## make test-console: the web console in a real headless Chromium (Debian's: scripts/install-chromium.sh installs it
## if missing; Playwright drives it) against real stacks, by role and accessible name (tests/e2e/console).
# In make test it runs after the chaos runs, beside the moto and observability lane: it asserts no timings of its own
# (its waits are 20 s deadlines) and its browser's CPU would upset the timed lane's.
test-console: install
	scripts/install-chromium.sh
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest -m browser tests/e2e/console --durations=8

## make console-screenshots: the same tests, rewriting the README's screenshots in docs/console/*.png.
console-screenshots: install
	TQ_CONSOLE_SCREENSHOTS=1 $(MAKE) test-console

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

## make chaos: 2,000 tasks while executors are SIGKILLed every 3 s, then 330 with 5% of AWS calls faulted too
## (docs/TESTING.md; also part of `make test`); prints its figures.
chaos: install
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest -m chaos -s

## make bench: submit latency, throughput, submit->start and AWS calls per task on a local stack.
bench: install
	$(BIN)/python bench/throughput.py

## make bench-batch: N tasks as single submits, then as POST /v1/tasks:batch of 500: tasks accepted per second and AWS
## calls per task (submit side and end to end), without and with idempotency keys.
bench-batch: install
	$(BIN)/python bench/batch_submit.py
	$(BIN)/python bench/batch_submit.py --keyed

## make bench-schedule: 750 tasks due at one instant, two scheduler replicas: lateness, once-only, AWS calls.
bench-schedule: install
	$(BIN)/python bench/schedule_peak.py

## make bench-cost: DynamoDB write units (table and indexes) and the AWS bill per million immediate tasks, from
## the item sizes tq's store really writes (bench/aws_cost.py; SQS requests per task from a measured run).
bench-cost: install
	$(BIN)/python bench/aws_cost.py
	$(BIN)/python bench/aws_cost.py --keyed

## make bench-calls: what single calls cost on ministack (FIFO vs standard sends, tq's claim expression, boto3 vs a
## signed POST on the client side): bench/call_costs.py.
bench-calls: install
	$(BIN)/python bench/call_costs.py

## make bench-history: /runs?limit=50 and /events?limit=100 of a repeating task with 50,000 events against one with 6.
bench-history: install
	$(BIN)/python bench/history_reads.py

## make bench-console: the console's tasks table (50 rows), a filtered page, a task page and the schedules page
## (50 rows): server and client time, p50/p95 of 200 each; then what its open live pages cost in AWS calls per
## second (bench/console_live.py).
bench-console: install
	$(BIN)/python bench/console_pages.py
	$(BIN)/python bench/console_live.py

## make bench-streams: concurrent SSE streams on one gateway worker (1,000 wait slots), opened in steps: ordinary
## requests' latency, the worker's RSS, CPU and threads, the watch's DynamoDB calls per second.
bench-streams: install
	$(BIN)/python bench/streams.py --slots 1000 --steps 0,100,200,400,600,800,1000

## make bench-memory: 200 tasks of 256 KiB [{},{},...] payloads listed page by page (tasks, then dead letters over
## two groups): each gateway worker's peak RSS.
bench-memory: install
	$(BIN)/python bench/listing_memory.py --dlq

## make test-downtime: the scheduler-downtime scenario alone (TQ_TEST_DOWNTIME_S, default 25 s; the issue's 180).
test-downtime: install
	TQ_TEST_EMULATOR=ministack $(BIN)/pytest tests/e2e/test_schedules.py -k catch_up

## make alerts: check the Prometheus rules and run their promtool tests, check Alertmanager's config and its routes
## (installs Debian's prometheus and prometheus-alertmanager first if they are missing).
AM_CONFIG := ops/alerts/alertmanager.yml
ROUTE_TEST := amtool config routes test --config.file=$(AM_CONFIG) --verify.receivers
alerts: monitoring
	promtool check rules ops/alerts/rules/*.yml
	promtool test rules ops/alerts/tests/*.yml
	amtool check-config $(AM_CONFIG)
	$(ROUTE_TEST)=page severity=page alertname=TqNoExecutorAlive priority=high
	$(ROUTE_TEST)=page severity=page alertname=TqQueueDepthHigh pool=gpu priority=high
	$(ROUTE_TEST)=ticket severity=ticket alertname=TqDeadLetterQueueNotEmpty group=team-a
	$(ROUTE_TEST)=ticket alertname=AnAlertWithoutSeverity

monitoring:
	scripts/install-monitoring.sh

## make infra: the Pulumi program's offline mock tests alone (they are unit tests: `make unit` runs them too).
infra: install
	$(BIN)/pytest -m unit infra/pulumi/tests tests/unit/test_dockerfiles.py

## make pants: Pants lint, check (mypy), unit tests and one pex per service in dist/, then start each pex
## (installs Pants 2.17.1 into .pants-venv first). CI runs it after `make test`.
pants: install
	scripts/pants-ci.sh

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt.new
	{ echo '# The one constraints file for the product and its tests: every third-party version, pinned.'; \
	  echo '# Regenerate with: make lock'; cat constraints.txt.new; } > constraints.txt && rm constraints.txt.new

clean:
	rm -rf $(VENV) $(EMU) $(CODEGEN) $(EXAMPLES_VENV) .pytest_cache .mypy_cache .ruff_cache .pants-venv 3rdparty/tools dist
