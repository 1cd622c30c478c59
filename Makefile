# Two entry points do all the set-up on a fresh machine:
#   make demo   installs into .venv and runs the whole pipeline on the embedded default
#   make test   installs into .venv (with test extras) and runs the test suite
#   make test-quick   the same without the tests marked slow (for development)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-quick bench install

$(VENV)/.installed: pyproject.toml scripts/install.sh
	@echo "make: first set-up of $(VENV) (about 4 minutes on a fresh machine; later runs skip it)"
	bash scripts/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	@echo "make demo: running hf-sparse demo (about 30 s on a 2-core CPU; it lists its steps first)"
	$(VENV)/bin/hf-sparse demo

test: $(VENV)/.installed
	@echo "make test: running the whole test suite, slow tests included (make test-quick skips them)"
	$(PY) -m pytest -q --durations=15 tests

# For development: the tests not marked slow (`make test` stays the full suite).
test-quick: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" --durations=10 tests

# The solver benchmark's references (adelie) need numpy<2: a separate environment.
.venv-bench/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh .venv-bench
	.venv-bench/bin/python -m pip install -q -e ".[bench]"
	touch $@

bench: .venv-bench/.installed
	.venv-bench/bin/python benchmarks/bench_solver.py --k 2 10
