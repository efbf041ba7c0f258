# lumiflow — two commands on a fresh machine:
#   make run    set up .venv, start the platform (embedded default) and run its main job
#   make test   set up .venv (and, as root, the Debian packages the tests need), pass every gate
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LUMI := $(VENV)/bin/lumi
PORT ?= 8080
PYTEST_ARGS ?=
# The venv is current when it was built from this exact pyproject.toml.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)

.PHONY: venv run stop test lint typecheck imports unit system-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

run: venv
	@$(LUMI) status >/dev/null 2>&1 || $(LUMI) up --detach --port $(PORT)
	$(LUMI) apply -f examples/hello/job.yaml --wait
	$(LUMI) logs trainingjob hello --replica worker-1
	$(LUMI) get trainingjobs
	@echo "The platform keeps running: '$(LUMI) --help' for more, 'make stop' to stop it."

stop: venv
	$(LUMI) down

# Debian packages the tests use (installed when run as root): PostgreSQL 15 for the store
# suite, Chromium and its driver for the dashboard's browser tests, an XRootD server for the
# artifact store's root:// suite (its Python client is the xrootd wheel). Node packages of the
# tests (a real OIDC issuer) come from npm, pinned by each folder's package-lock.json.
DEBIAN_PACKAGES := postgresql chromium chromium-driver xrootd-server
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
		missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	fi
	@for dir in $$(ls -d tests/*/ 2>/dev/null); do \
		if [ -f "$$dir/package.json" ] && [ ! -d "$$dir/node_modules" ]; then \
			echo "npm install in $$dir"; (cd "$$dir" && npm ci --silent --no-audit --no-fund); \
		fi; \
	done

lint: venv
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

unit: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test: venv system-deps lint typecheck imports unit

bench: venv
	$(PY) bench/submit_latency.py
	$(PY) bench/api_throughput.py
	$(PY) bench/scheduler_throughput.py
	$(PY) bench/auth_dashboard.py
	$(PY) bench/train_overhead.py
	$(PY) bench/tune_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
