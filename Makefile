# Two commands from a fresh clone: `make test` and `make demo`.
# Both build .venv from uv.lock first. If uv is not installed, it is fetched with pip
# into .tools/ (nothing is installed system-wide).

SHELL := /bin/bash
# The interpreter itself, not a pyenv shim: `uv sync --python <shim>` rebuilt all of
# .venv (30-55 s) on every re-sync, where the interpreter's own path keeps it.
PYTHON ?= $(shell $$(command -v python3.11 || command -v python3) -c 'import sys; print(sys.executable)')
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV_PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: help venv test test-fast demo lint bench codec-cost answers clean requirements dist \
        check-install
# A bare `make` lists the targets: the first rule below, .tools/bin/uv, was the default
# goal, and `make` downloaded uv even with one on PATH.
.DEFAULT_GOAL := help

help:
	@echo "make test        the whole test suite (what .ci/run runs; ~12 min on 2 cores)"
	@echo "make test-fast   the suite without slow, notebook and browser tests"
	@echo "make demo        the EMNIST tutorial's two runs on the embedded digits, compared"
	@echo "make venv        .venv from uv.lock (every target above builds it first)"
	@echo "make lint        ruff"
	@echo "make bench       speed and memory figures, every codec (~15 min)"
	@echo "make codec-cost  each codec's share of a round, from its parts (~half a minute)"
	@echo "make answers     the README's answers to the tutorial's three questions (long)"
	@echo "make requirements | dist | check-install | clean   (see the Makefile)"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

# --compile-bytecode: uv installs no .pyc files by default, and with PYTHONDONTWRITEBYTECODE
# set (as on our CI machines) Python never caches them either, so every interpreter would
# compile TensorFlow's and TFF's sources again: `import tensorflow_federated` took 22 s of
# CPU that way and 8 s with the bytecode, and the suite starts dozens of interpreters.
# (The stamp's name changed with the flag, so a .venv synced without it is synced again.)
# --locked: a pyproject.toml changed without `uv lock` is refused (--frozen installed
# the old lock's packages and said nothing).
.venv/.synced-bytecode: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --compile-bytecode --python $(PYTHON)
	touch $@

venv: .venv/.synced-bytecode

# Tests run in one process per core (pytest-xdist): most of the suite's time is TFF
# building computations and binaries importing TensorFlow, one core each. `worksteal`
# balances the few minute-long tests (chaos, notebooks, benchmark) against the rest.
# --durations: the slowest tests close the log, to see where the suite's time goes.
PYTEST := $(VENV_PY) -m pytest -q -n auto --dist worksteal --durations=15

test: venv
	$(PYTEST) tests

# The edit-test loop: everything but the slow, notebook and browser tests.
test-fast: venv
	$(PYTEST) -m "not slow and not notebook and not browser" tests

demo: venv
	$(VENV_PY) experiments/demo.py

# Speed and memory figures, and every codec against uncompressed (uplink only and both
# ways): prints them, writes runs/benchmark.json and the codec table into README.md. 15 rounds:
# on this 2-core VM one round pair's codec/uncompressed CPU ratio spreads by +-20%, and the
# median of 7 moved by up to 0.18 between runs. Writing the
# 3,400-client sqlite takes longest; it is kept in runs/benchmark_data for next time.
bench: venv
	mkdir -p runs
	$(VENV_PY) -m tools.run_benchmark --rounds=15 --output=runs/benchmark.json \
	    --memory_cache_dir=runs/benchmark_data --codecs=all --readme=README.md

# Half a minute instead of bench's twenty, for work on a codec: each codec's client encode and
# server decodes on the benchmark's tensors, interleaved with uncompressed rounds, and
# the uplink ratio they predict beside the one the last `make bench` measured.
codec-cost: venv
	$(VENV_PY) -m tools.codec_cost --reps=9 \
	    $$(test -f runs/benchmark.json && echo --benchmark_json=runs/benchmark.json)

# The README's answers to the tutorial's three questions (3 seeds per configuration, on
# digits and Shakespeare fine-tuning): runs, docs/answers.json and the README block.
answers: venv
	$(VENV_PY) -m tools.answers --readme=README.md

# requirements.txt: the lock's runtime closure, for installing with plain pip (no uv).
# --locked refuses a uv.lock that no longer matches pyproject.toml (run `uv lock` first);
# --no-default-groups leaves out the dev group; --no-emit-project leaves out the `-e .`
# line (the package itself is installed from its wheel). The header is written here
# because it explains the install command, which uv's own header does not.
define REQUIREMENTS_HEADER
# Generated from uv.lock by `make requirements`: do not edit. tests/test_requirements_export.py
# fails when this file and uv.lock disagree.
#
# Install with plain pip (Python 3.11), see the README's Install section:
#   pip install --no-deps -r requirements.txt
#   pip install --no-deps dist/fedcompress-*.whl      (the wheel from `make dist`)
#
# --no-deps is required: tensorflow-federated 0.87.0 declares jax==0.4.14 and
# jaxlib==0.4.14, which PyPI no longer carries. uv.lock overrides both to 0.4.13
# ([tool.uv] override-dependencies in pyproject.toml); pip cannot override a dependency's
# pin, so without --no-deps its resolver stops with ResolutionImpossible. Skipping
# resolution is safe because this file is the lock's whole runtime closure: every
# transitive dependency at its locked version, with the lock's hashes. Afterwards
# `pip check` reports TFF's two jax pins and nothing else.
endef
export REQUIREMENTS_HEADER

requirements: | $(UV)
	{ printf '%s\n' "$$REQUIREMENTS_HEADER"; \
	  $(UV) export --locked --no-default-groups --no-emit-project --format requirements.txt \
	      --no-header --quiet; } > requirements.txt.tmp
	mv requirements.txt.tmp requirements.txt

# Wheel and sdist of this checkout in dist/ (emptied first, so `dist/fedcompress-*.whl`
# names one file). The wheel holds the fedcompress package only.
dist: | $(UV)
	rm -rf dist
	$(UV) build --python $(PYTHON) --out-dir dist

# The README's plain-pip install (no uv) of the wheel from `make dist` in a fresh venv,
# then an import and a one-round run from outside the checkout. It downloads TensorFlow
# and the rest from PyPI (minutes), so it is not part of `make test`.
check-install: dist
	$(PYTHON) tools/check_install.py --python $(PYTHON) --wheel dist/fedcompress-*.whl

lint: venv
	.venv/bin/ruff check fedcompress experiments tests tools

clean:
	rm -rf .venv .tools dist
