# Every target installs what it needs: a fresh clone only needs python3, pip, make, node and npm.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: test test-fast demo bench lint synth clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --maxschedchunk=2

# The inner loop: everything but the tests marked slow (synth, cfn-lint, notebook, server processes).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --maxschedchunk=2 -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/abtest demo

bench: $(STAMP)
	$(PY) bench/regret.py
	$(PY) bench/decisions.py
	$(PY) bench/demo_decisions.py
	$(PY) bench/api.py
	$(PY) bench/aggregate.py
	$(PY) bench/server.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

synth: $(STAMP) $(NODE_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk synth -c stage_name=prod --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache
