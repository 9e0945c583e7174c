# Two commands from a fresh clone: `make test` and `make demo`.
# Both build .venv from uv.lock first. If uv is not installed, it is fetched with pip
# into .tools/ (nothing is installed system-wide).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV_PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: venv test test-fast demo lint bench clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

venv: .venv/.synced

test: venv
	$(VENV_PY) -m pytest -q tests

# The edit-test loop: everything but the slow, notebook and browser tests.
test-fast: venv
	$(VENV_PY) -m pytest -q -m "not slow and not notebook and not browser" tests

demo: venv
	$(VENV_PY) experiments/demo.py

# Speed and memory figures: prints them and writes runs/benchmark.json. Writing the
# 3,400-client sqlite takes longest; it is kept in runs/benchmark_data for next time.
bench: venv
	mkdir -p runs
	$(VENV_PY) -m tools.run_benchmark --rounds=7 --output=runs/benchmark.json \
	    --memory_cache_dir=runs/benchmark_data

lint: venv
	.venv/bin/ruff check fedcompress experiments tests tools

clean:
	rm -rf .venv .tools
