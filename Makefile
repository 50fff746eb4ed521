# Two set-up commands (see README): `make demo` and `make test`. Both start with `make install`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9

# Torch: the CUDA build from PyPI where a GPU is present; the CPU build elsewhere, from a
# local wheel folder when the machine has one (PIP_FIND_LINKS), else from PyTorch's CPU index,
# so that a machine without a GPU never downloads the multi-GB CUDA packages.
TORCH_SOURCE := $(shell \
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo ""; \
  elif [ -n "$$PIP_FIND_LINKS" ] && ls $$PIP_FIND_LINKS/torch-*.whl >/dev/null 2>&1; then echo "--find-links $$PIP_FIND_LINKS"; \
  else echo "--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match"; fi)

.PHONY: install demo test lint bench clean up down browser monitoring-tools
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) pip install --python $(PY) --compile-bytecode $(TORCH_SOURCE) -c constraints.txt -e '.[dev]'
	@touch $@

demo: install
	$(VENV)/bin/lockgate demo

# pytest-xdist workers: one per core, at most 4 (each worker starts its own servers where its tests
# need one); TEST_WORKERS=0 runs the suite in this process, one test after the other.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

test: install browser monitoring-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pytest -n $(TEST_WORKERS)

# Headless Chromium + ChromeDriver for tests/e2e/test_browser.py, from Debian (Selenium's and
# Playwright's own browser downloads do not work on machines without general network access).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "make browser: installing chromium and chromium-driver needs root (or sudo)" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# Prometheus (with promtool) and the Pushgateway for tests/integration/test_prometheus.py and
# tests/deploy/test_prometheus_files.py, from Debian; their services are not started.
monitoring-tools:
	@if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus-pushgateway ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "make monitoring-tools: installing prometheus and prometheus-pushgateway needs root (or sudo)" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/mypy

up: install
	$(VENV)/bin/lockgate up
down:
	$(VENV)/bin/lockgate down

# Regenerate constraints.txt after changing dependencies in pyproject.toml. Existing pins are kept
# where they still fit; torch is resolved as the local CPU build and written without "+cpu", so
# the pin matches both that build and PyPI's CUDA build.
lock: install
	sed -e 's/^torch==\([0-9.]*\)$$/torch==\1+cpu/' constraints.txt > constraints.lock.tmp
	$(UV) pip compile pyproject.toml --extra dev --python $(PY) $(TORCH_SOURCE) -o constraints.lock.tmp
	sed -e 's/^torch==\([0-9.]*\)+cpu/torch==\1/' -e 's| --find-links [^ ]*||' constraints.lock.tmp > constraints.txt
	rm -f constraints.lock.tmp

clean:
	rm -rf $(VENV) .lockgate .pytest_cache .mypy_cache .ruff_cache
