# The README's two commands: `make run` and `make test`. Each creates .venv with
# the Python found on PATH, installs the project into it, then runs. Both build
# the web client (web/ → secure_link/web_dist/) when npm is there and the build
# is older than its sources.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM := $(shell command -v npm 2>/dev/null)
WEB_BUILD := secure_link/web_dist/index.html
WEB_DEPS := web/node_modules/.package-lock.json
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json web/package-lock.json

.PHONY: run test lint system-tools bench mutants clean web web-test api-types screens

# The venv is made without pip and given the newest by the interpreter's own pip (2 s): ensurepip's
# older copy, then upgraded, took 6 s. An interpreter without pip falls back to ensurepip.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python install --quiet --upgrade pip \
		|| { $(BIN)/python -m ensurepip --upgrade && $(BIN)/python -m pip install --quiet --upgrade pip; }
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The benchmark's plots and profiles (matplotlib and numpy: ~150 MB, ~5 s to install) only
# for `make bench`: no test needs them.
$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

# --prefer-offline: what npm's cache already holds is not asked for again.
$(WEB_DEPS): web/package-lock.json
	cd web && npm ci --no-audit --no-fund --prefer-offline

$(WEB_BUILD): $(WEB_DEPS) $(WEB_SOURCES)
	cd web && npm run build

ifeq ($(NPM),)
web web-test:
	@echo "npm is not installed: the web client is not built, and its tests are skipped."
	@echo "Install Node.js 20+ with npm to build web/ (the API works without it)."
else
web: $(WEB_BUILD)

web-test: $(WEB_DEPS)
	cd web && npm test --silent
endif

run: $(STAMP) web
	$(BIN)/secure-link serve

# pytest-xdist workers: many tests wait on servers, sockets and subprocesses, so three pay off
# on two cores; four were no faster there and made the slowest tests slower still
# (docs/testing.md). PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 3

# The Python install and the web client's install, build and Vitest need nothing of each other:
# side by side they take about as long as the Python install alone.
# Without PYTHONDONTWRITEBYTECODE (set on some machines) the first process caches what pytest
# rewrites (test modules and its plugins: ~3 s a process) and the bytecode of secure_link for
# the rest: four workers and dozens of `secure-link serve` subprocesses.
test: system-tools
	$(MAKE) --no-print-directory --jobs=2 --output-sync=target $(STAMP) web web-test
	$(MAKE) --no-print-directory lint
	env -u PYTHONDONTWRITEBYTECODE PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# ruff with the rules its pinned version enables by default, at the Python setup.cfg requires and the
# house's 120 columns, imports left in the order the house writes them. ruff reads no setup.cfg (only
# pyproject.toml and its own files), so its settings are these flags. mypy's are setup.cfg's [mypy].
RUFF := $(BIN)/ruff check --target-version py311 --line-length 120 --extend-ignore I001
lint: $(STAMP)
	$(RUFF) secure_link tests bench
	$(BIN)/mypy

# Debian's Chromium (browser tests), nginx and strace (deploy tests): installed when missing and this
# machine lets us (root with apt-get: a fresh CI machine); otherwise the command is printed,
# those tests skip saying so, and the run ends with a count of what was skipped and why.
SYSTEM_PACKAGES := chromium:/usr/bin/chromium nginx:/usr/sbin/nginx strace:/usr/bin/strace
APT_GET ?= apt-get
system-tools:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do [ -x "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v $(APT_GET) >/dev/null; then \
		echo "Installing$$missing for the browser and deploy tests (apt-get)"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing; \
	else \
		echo "Missing$$missing: their tests will be skipped. Install them with: sudo apt-get install$$missing"; \
	fi

# Regenerate web/src/lib/api-types.ts from the OpenAPI document (no server needed).
api-types: $(STAMP) $(WEB_DEPS)
	mkdir -p var
	$(BIN)/secure-link openapi > var/openapi.json
	cd web && npx openapi-typescript ../var/openapi.json -o src/lib/api-types.ts

# Retake the README's screenshots (docs/screens/) with the browser tests.
screens: $(STAMP) web
	SECURE_LINK_SCREENS=docs/screens $(BIN)/python -m pytest -p no:randomly tests/browser/test_browser.py \
		tests/browser/test_browser_conversations.py tests/browser/test_browser_v12.py

bench: $(VENV)/.bench
	$(BIN)/python -m bench

# Mutation testing (slow: not in CI; every module whole took about seven hours on two
# cores, module by module: tests/mutants/README.md. After a change, run the changed functions by
# name). mutmut over the modules in setup.cfg's [mutmut], then the
# hand-made SQL and issue-15 mutants, each with its killer. Three children: a mutant's
# tests wait on servers as much as they compute. MUTMUT_ARGS narrows a run, e.g.
# MUTMUT_ARGS='"secure_link.chat.*"', MUTMUT_ARGS='"secure_link.files.uploads.x__store*"' or
# MUTMUT_ARGS='$$(python3 tests/mutants/sample.py 32)'.
$(VENV)/.mutants: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,mutants]'
	touch $@

mutants: $(VENV)/.mutants
	$(BIN)/mutmut run --max-children 3 $(MUTMUT_ARGS)
	$(BIN)/python tests/mutants/scores.py
	$(BIN)/python tests/mutants/hand_made.py

clean:
	rm -rf $(VENV) var build *.egg-info secure_link/web_dist web/node_modules mutants
