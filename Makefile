# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install the project (pinned in pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeupdate-installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist): a simulation test spends most of its wall time waiting on Ray's
# start-up and Flower's polling, so two run well side by side on 2 cores. Each test module stays in
# one process (its module-scoped simulations run once). WORKERS=0 runs everything in this process.
WORKERS ?= 2
XDIST   := $(if $(filter 0,$(WORKERS)),-p no:xdist,-n $(WORKERS) --dist loadscope)

.PHONY: demo test test-fast test-slow bench clean-runs install peers

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeupdate run configs/quickstart.toml --out runs/quickstart --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(XDIST) $(PYTEST_ARGS)

# everything but the tests that start Flower's simulation engine (Ray): under 90 s
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not sim" $(XDIST) $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/package_bytes.py

clean-runs:
	rm -rf runs/

# The MPEG NNC peer (benchmarks/package_vs_nnc.py): NNCodec pins numpy < 2, so it gets its own
# virtualenv, never the project's. Builds the DeepCABAC C++ extension (needs g++, ~2 min).
PEERS  ?= build/peers/nnc
$(PEERS)/.nncodec-installed:
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet numpy==1.26.4 pybind11==2.13.6 setuptools==75.8.0 wheel==0.45.1 h5py==3.12.1 tqdm==4.67.1
	$(PEERS)/bin/python -m pip install --quiet --no-deps --no-build-isolation nncodec==2.1.3
	@touch $@

peers: $(PEERS)/.nncodec-installed
