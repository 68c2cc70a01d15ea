# The README's two commands: `make run` and `make test`. Each creates .venv with
# the Python found on PATH, installs the project into it, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench mutants clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/secure-link serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Mutation testing (slow: not in CI). mutmut over the modules in setup.cfg's
# [mutmut], then the hand-made SQL and issue-15 mutants, each with its killer.
# MUTMUT_ARGS narrows a run, e.g. MUTMUT_ARGS='"secure_link.chat*"'.
$(VENV)/.mutants: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,mutants]'
	touch $@

mutants: $(VENV)/.mutants
	$(BIN)/mutmut run --max-children 2 $(MUTMUT_ARGS)
	$(BIN)/python tests/mutants/scores.py
	$(BIN)/python tests/mutants/hand_made.py

clean:
	rm -rf $(VENV) var build *.egg-info mutants
