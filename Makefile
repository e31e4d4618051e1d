# gpytorch-ext: `make demo` and `make test` are the whole set-up (see README.md).
PYTHON     ?= python3
VENV       ?= .venv
DEMO_VENV  ?= .venv-demo
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
JOBS       ?= 2

PY  := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo demo-env test test-source upstream upstream-verify upstream-verify-linear-operator upstream-suite \
	upstream-suite-linear-operator lint bench figures wheel clean

# torch first, from TORCH_SPEC: a bare `torch` requirement would pull the CUDA build. (Any virtual environment:
# .venv for development, $(DEMO_VENV) for the demo.)
%/.torch:
	$(PYTHON) -m venv $*
	$*/bin/python -m pip install --quiet --upgrade pip
	$*/bin/python -m pip install "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.installed-test: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[test]"
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP) install --quiet -e ".[test,bench]"
	@touch $@

# The demo runs in an environment of its own, as a user gets it: torch, then `pip install .` alone (no extras).
# tests/registry/test_demo_env.py builds exactly this (make demo-env) and checks the report in it.
PACKAGE_FILES := pyproject.toml pytest_gpytorch_ext.py $(shell find gpytorch_ext patches -type f -not -name '*.pyc')

$(DEMO_VENV)/.installed: $(DEMO_VENV)/.torch $(PACKAGE_FILES)
	$(DEMO_VENV)/bin/python -m pip install --quiet .
	@touch $@

demo-env: $(DEMO_VENV)/.installed

demo: demo-env
	$(DEMO_VENV)/bin/python -m gpytorch_ext

test: $(VENV)/.installed-test
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

# GPyTorch's own test suite (from its pinned source distribution) against our repairs, both ways, and our repair
# tests against the patched source: see patches/README.md.
SOURCE_TREE ?= .cache/gpytorch-src
LINOP_TREE ?= .cache/linear-operator-src
REPAIR_TESTS ?= tests/distributions tests/kernels tests/priors tests/botorch tests/variational tests/operators
# linear_operator's own tests of its Matmul function: every operator's matmul tests (patches/linear_operator/)
LINOP_TESTS ?= test/functions test/operators --pytest-args -k matmul

upstream: upstream-verify upstream-verify-linear-operator upstream-suite upstream-suite-linear-operator test-source

upstream-verify: $(VENV)/.installed-test
	$(PY) -m gpytorch_ext.staging verify --jobs $(JOBS)

upstream-verify-linear-operator: $(VENV)/.installed-test
	$(PY) -m gpytorch_ext.staging verify --project linear_operator --jobs $(JOBS) --tests $(LINOP_TESTS)

upstream-suite: $(VENV)/.installed-test
	$(PY) -m gpytorch_ext.staging suite --monkeypatch --series-tests --jobs $(JOBS)

upstream-suite-linear-operator: $(VENV)/.installed-test
	$(PY) -m gpytorch_ext.staging suite --monkeypatch --series-tests --project linear_operator --jobs $(JOBS) \
		--tests $(LINOP_TESTS)

test-source: $(VENV)/.installed-test
	$(PY) -m gpytorch_ext.staging prepare --dest $(SOURCE_TREE)
	$(PY) -m gpytorch_ext.staging prepare --project linear_operator --dest $(LINOP_TREE)
	PYTHONPATH="$(abspath $(SOURCE_TREE)):$(abspath $(LINOP_TREE))" GPYTORCH_EXT_AUTOPATCH=0 \
		$(PY) -m pytest -n $(JOBS) --impl=source $(REPAIR_TESTS) $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check gpytorch_ext tests benchmarks pytest_gpytorch_ext.py
	$(VENV)/bin/ruff format --check gpytorch_ext tests benchmarks pytest_gpytorch_ext.py

wheel: $(VENV)/.installed-test
	$(PY) -m build --wheel --outdir dist .

# every benchmark script; benchmarks/figures.py also writes the PNG plots in docs/ that README.md shows
bench: $(VENV)/.installed-bench
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

figures: $(VENV)/.installed-bench
	$(PY) benchmarks/figures.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
