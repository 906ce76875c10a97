# `make demo` runs the built-in example; `make test` runs the suite on every supported
# interpreter it finds (3.11, 3.12, 3.13) and fails when it finds none.
# Each interpreter gets its own virtual environment, with versions pinned in constraints.txt.
SHELL := /bin/bash
VERSIONS := 3.11 3.12 3.13

.PHONY: demo test bench bench-peers fuzz clean

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

# Long random-program campaigns, 10000 programs per fuzzer, with the count of each
# outcome (the test suite runs 500 per fuzzer).
fuzz:
	@$(MAKE) --no-print-directory .venv-3.11/stamp && cd fuzz && \
	  for fuzzer in reversal gradients unsupported; do \
	    ../.venv-3.11/bin/python $$fuzzer.py 0 10000 || status=1; done; exit $${status:-0}

bench:
	@$(MAKE) --no-print-directory .venv-3.11/stamp && .venv-3.11/bin/python benchmarks/bench_foundation.py

# The peer benchmark: bytrev, autograd, JAX (eager and jit) and PyTorch on five workloads,
# each measurement in its own process; writes benchmarks/RESULTS.md and two plots (about
# 40 minutes; `python benchmarks/bench_peers.py --quick` takes seconds). Peers that cannot
# be installed here are reported as skipped.
.venv-bench/stamp: pyproject.toml constraints.txt
	@py=$$(for v in $(VERSIONS); do scripts/find-python $$v && break; done) || \
	  { echo "no supported Python (3.11-3.13) found" >&2; exit 1; }; \
	rm -rf .venv-bench; $$py -m venv .venv-bench && \
	.venv-bench/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' && \
	for peer in autograd jax torch matplotlib; do \
	  .venv-bench/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt $$peer || \
	  echo "$$peer could not be installed: the benchmark reports it as skipped" >&2; done; \
	touch $@

bench-peers: .venv-bench/stamp
	@.venv-bench/bin/python benchmarks/bench_peers.py

clean:
	rm -rf .venv-* .pytest_cache .hypothesis
