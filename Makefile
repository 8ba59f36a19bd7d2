# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install the project (pinned in pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeupdate-installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-slow bench clean-runs install

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeupdate run configs/quickstart.toml --out runs/quickstart

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# everything but the tests that start Flower's simulation engine (Ray): under 90 s
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not sim" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/package_bytes.py

clean-runs:
	rm -rf runs/
