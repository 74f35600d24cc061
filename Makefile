# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-airflow bench clean

$(STAMP): pyproject.toml requirements/test.txt requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(UV) pip install --python $(PY) -q -c requirements/constraints.txt -r requirements/test.txt -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest tests -q --durations=15

test-unit: install
	$(PY) -m pytest tests/unit -q

test-airflow: install
	$(PY) -m pytest tests/airflow -q --durations=15

bench: install
	$(PY) benchmarks/bench_checkpoint.py
	$(PY) benchmarks/bench_infra.py

clean:
	rm -rf $(VENV) reports .pytest_cache
