# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: install k8s demo test test-unit test-airflow bench clean ui ui-test compat

$(STAMP): pyproject.toml requirements/test.txt requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(UV) pip install --python $(PY) -q -c requirements/constraints.txt -r requirements/test.txt -e .
	touch $(STAMP)

install: $(STAMP)

# The Kubernetes control plane of the KubernetesExecutor tests (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), built from k8s.io/kubernetes with Go into ~/.cache/airflow-resilience/k8s/<version>/
# (about 6 minutes cold on 2 cores; a warm cache returns at once). Without Go it says so; under CI=true that fails.
k8s: install
	@PATH="$$PATH:/usr/local/go/bin" $(PY) -m airflow_resilience.testing.kube build || [ "$${CI:-}" != true ]

# The main job: a disruption drill with three sides on embedded Airflows: stock (plain loop), stock-checkpointed
# (a hand-written task_state_store checkpoint) and airflow-resilience (retries=0; the stock sides get one retry).
# The heartbeat timeout is shortened to 30 s on every side to keep it to a few minutes (the report says so).
demo: install
	$(PY) -m airflow_resilience.drills --scenario eviction,lost_worker,oom --items 30 --seconds 1 \
		--sides stock,stock-checkpointed,ours --retries 0 --stock-retries 1 --heartbeat-timeout 30 --out reports/drill

# The suite: the UI's type check, Vitest suite and reproducible-build check first (about a minute), then pytest.
test: install k8s ui-test
	$(PY) -m pytest tests -q --durations=15

test-unit: install
	$(PY) -m pytest tests/unit -q

test-airflow: install k8s
	$(PY) -m pytest tests/airflow -q --durations=15

bench: install k8s
	$(PY) benchmarks/bench_checkpoint.py
	$(PY) benchmarks/bench_infra.py
	$(PY) benchmarks/bench_operators.py
	$(PY) benchmarks/bench_drill.py
	$(PY) benchmarks/bench_watermark.py
	$(PY) benchmarks/bench_celery.py
	$(PY) benchmarks/bench_kubernetes.py
	$(PY) benchmarks/bench_overhead.py --running 200 --json reports/bench_overhead.json
	$(PY) benchmarks/bench_storm.py --tasks 50 --minutes 2 --json reports/bench_storm.json
	$(PY) benchmarks/bench_celery_watch.py --workers 2,8,16 --json reports/bench_celery_watch.json
	$(PY) benchmarks/bench_recovery.py --repeats 10 --json reports/bench_recovery.json

# The Airflow UI plugin bundles (ui/, React + TypeScript, Vite): built into src/airflow_resilience/airflow/ui_dist,
# which is committed and shipped in the wheel. npm ci runs again only when ui/node_modules is missing or the
# lockfile is newer. ui-test: the type check, the Vitest suite, then a fresh npm ci + build in a temp dir that
# must give the committed ui_dist byte for byte (ui/check-reproducible.sh). Needs Node.js >= 20.19 and npm.
UI_INSTALLED := ui/node_modules/.package-lock.json

$(UI_INSTALLED): ui/package.json ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund
	touch $(UI_INSTALLED)

ui: $(UI_INSTALLED)
	cd ui && npm run --silent build

ui-test: $(UI_INSTALLED)
	cd ui && npm run --silent typecheck
	cd ui && npm test
	ui/check-reproducible.sh

clean:
	rm -rf $(VENV) reports .pytest_cache ui/node_modules

# The compatibility run (docs/compatibility.md): the unit tests and a real-Airflow subset on the other Airflow
# 3.3.x releases, each in its own virtualenv .venv-compat-<version> from requirements/compat-<version>.txt
# (the package installed with --no-deps). Re-resolve a set with `scripts/compat.sh lock <version>`.
COMPAT_AIRFLOW ?= 3.3.0 3.3.1

compat:
	PYTHON=$(PYTHON) scripts/compat.sh run $(COMPAT_AIRFLOW)
