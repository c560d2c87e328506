# The two commands a newcomer needs: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := $(CURDIR)/.demo

.PHONY: run stop test bench lint fmt clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fast]'
	touch $(STAMP)

DEMO_ENV := BOTSTER_HOME=$(DEMO)/home BOTSTER_RUNTIME_DIR=$(DEMO)/run BOTSTER_WORKTREE_BASE=$(DEMO)/worktrees

# Starts the demo, or comes back to it after a detach.
run: $(STAMP)
	$(DEMO_ENV) $(BIN)/python -m botster.demo $(DEMO)

# Stops the demo's hub and its agents' sessions (they outlive the hub otherwise).
stop:
	@if [ -x $(BIN)/python ] && [ -d $(DEMO)/repo ]; then \
		$(DEMO_ENV) $(BIN)/python -m botster.cli stop --repo $(DEMO)/repo --sessions; fi

test: $(STAMP)
	$(BIN)/ruff check botster tests bench harness
	$(BIN)/ruff format --check botster tests bench harness
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check botster tests bench harness

fmt: $(STAMP)
	$(BIN)/ruff format botster tests bench harness
	$(BIN)/ruff check --fix botster tests bench harness

clean: stop
	rm -rf $(VENV) $(DEMO) .pytest_cache
