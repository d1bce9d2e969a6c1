# Every target installs what it needs: a fresh clone only needs python3, pip, make, node and npm.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
NOTEBOOK_STAMP := $(VENV)/.notebook-stamp
NOTEBOOK := notebooks/ab-testing-simulation.ipynb
# The CDK (its CLI and jsii, which runs aws-cdk-lib) supports Node.js 22 and 24 only. With an
# older system Node, a Node 24 LTS from npm's `node` package goes into .node/, first on PATH.
NODE_LTS := 24
LOCAL_NODE := $(CURDIR)/.node/node_modules/.bin
ifneq ($(shell node -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' \
	2>/dev/null && echo ok),ok)
NODE := $(LOCAL_NODE)/node
export PATH := $(LOCAL_NODE):$(PATH)
endif

# Bytecode caches are written even where the environment turns them off: without them every
# test process compiled the plugin packages pytest rewrites (schemathesis, hypothesis, anyio:
# about 4 s of CPU each) and every `abtest` subprocess compiled the package again.
unexport PYTHONDONTWRITEBYTECODE

# The browser tests (/docs, /dashboard) drive Debian's Chromium, headless, through Playwright.
CHROMIUM ?= /usr/bin/chromium

.PHONY: test test-fast demo notebook notebook-run bench lint synth clean dashboard-screenshot

# uv installs the packages: the same versions pip resolves (`pip freeze` of both venvs
# compared), in 14 s on a fresh venv where pip took 36, both downloading every package (no
# cache of either), pip being the longest of the three installs `make test` runs side by side.
# Neither byte-compiles: pip compiled every file it installed, 13,500 of them (65 s of CPU),
# where the whole test suite leaves 1,091 compiled files in the venv; what is imported is
# compiled then, once, and kept (above).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.5'
	$(PY) -m uv pip install --quiet --python $(PY) -e '.[dev]'
	touch $@

$(LOCAL_NODE)/node:
	npm install --prefix .node --no-audit --no-fund --loglevel=error node@$(NODE_LTS)

$(NODE_STAMP): package.json package-lock.json $(NODE)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "make test needs Chromium for the browser tests: sudo apt-get install chromium" \
			"(Debian's package), or point CHROMIUM=/path/to/chromium at one"; \
		exit 1; \
	fi

# On a fresh clone pip, npm and apt wait mostly on downloads and the disk: they run side by
# side. Once done their stamps are newer than their inputs, and the first line does nothing.
test:
	@$(MAKE) --no-print-directory -j 3 --output-sync=target $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	ABTEST_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -n 2 --maxschedchunk=2

# The inner loop: everything but the tests marked slow (synth, cfn-lint, notebook, server processes).
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --maxschedchunk=2 -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/abtest demo

# The README's picture of /dashboard after the demo's traffic, in headless Chromium.
dashboard-screenshot: $(STAMP) $(CHROMIUM)
	ABTEST_CHROMIUM=$(CHROMIUM) $(PY) docs/dashboard_screenshot.py

$(NOTEBOOK_STAMP): $(STAMP)
	$(PY) -m uv pip install --quiet --python $(PY) -e '.[notebook]'
	touch $@

# Open the notebook in Jupyter (it prints the URL to open), or execute it into notebook-output/.
notebook: $(NOTEBOOK_STAMP)
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOK)

notebook-run: $(NOTEBOOK_STAMP)
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --output-dir notebook-output $(NOTEBOOK)

# bench/server.py drives the servers with wrk, a C load generator (Debian's package).
bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || \
		{ echo "bench/server.py needs wrk: sudo apt-get install -y wrk"; exit 1; }
	$(PY) bench/regret.py
	$(PY) bench/decisions.py
	$(PY) bench/call_estimates.py
	$(PY) bench/demo_decisions.py
	$(PY) bench/api.py
	$(PY) bench/aggregate.py
	$(PY) bench/server.py
	$(PY) bench/coldstart.py
	$(PY) bench/offpolicy.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

synth: $(STAMP) $(NODE_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk synth -c stage_name=prod --quiet

clean:
	rm -rf $(VENV) node_modules .node cdk.out .pytest_cache
