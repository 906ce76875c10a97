# `make demo` runs the built-in example; `make test` runs the suite on every supported
# interpreter it finds (3.11, 3.12, 3.13) and fails when it finds none.
# Each interpreter gets its own virtual environment, with versions pinned in constraints.txt.
SHELL := /bin/bash
VERSIONS := 3.11 3.12 3.13

.PHONY: demo test bench bench-grad fuzz clean

# .venv-3.X/stamp: a virtual environment for Python 3.X with bytrev and its test extra.
.venv-%/stamp: pyproject.toml constraints.txt
	@py=$$(scripts/find-python $*) || { echo "Python $* not found" >&2; exit 1; }; \
	rm -rf .venv-$*; $$py -m venv .venv-$* && \
	.venv-$*/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' && \
	touch $@

demo:
	@for v in $(VERSIONS); do \
	  if scripts/find-python $$v >/dev/null; then \
	    $(MAKE) --no-print-directory .venv-$$v/stamp && exec .venv-$$v/bin/bytrev demo; fi; \
	done; echo "no supported Python (3.11-3.13) found" >&2; exit 1

test:
	@found=0; for v in $(VERSIONS); do \
	  scripts/find-python $$v >/dev/null || { echo "== Python $$v: not found, skipped"; continue; }; \
	  found=1; echo "== Python $$v"; \
	  $(MAKE) --no-print-directory .venv-$$v/stamp && .venv-$$v/bin/python -m pytest || exit 1; \
	done; [ $$found = 1 ] || { echo "no supported Python (3.11-3.13) found" >&2; exit 1; }

# A long random-program campaign (the test suite runs a bounded one).
fuzz:
	@$(MAKE) --no-print-directory .venv-3.11/stamp && .venv-3.11/bin/python fuzz/reversal.py 0 10000

bench:
	@$(MAKE) --no-print-directory .venv-3.11/stamp && .venv-3.11/bin/python benchmarks/bench_foundation.py

# Gradients against f and autograd; each measurement in its own process, long (~45 min;
# `python benchmarks/bench_grad.py --quick` is a smoke test).
bench-grad:
	@$(MAKE) --no-print-directory .venv-3.12/stamp && .venv-3.12/bin/python benchmarks/bench_grad.py

clean:
	rm -rf .venv-* .pytest_cache .hypothesis
