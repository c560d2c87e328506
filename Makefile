# The two commands a newcomer needs: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := $(CURDIR)/.demo

.PHONY: run stop test bench lint fmt clean web web-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fast]'
	touch $(STAMP)

# The browser app (web/, TypeScript + Vite) is built into botster/relay/static/, which the relay
# serves. The stamp makes this a no-op unless a source, the lock file or the output changed.
WEB_SRC := $(shell find web/src web/public web/index.html web/package.json web/package-lock.json \
	web/vite.config.ts web/tsconfig.json -type f 2>/dev/null)
WEB_STAMP := botster/relay/static/.built

web: $(WEB_STAMP)

$(WEB_STAMP): $(WEB_SRC)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build
	touch botster/relay/static/.gitkeep
	touch $(WEB_STAMP)

web-test: $(WEB_STAMP) $(STAMP)
	cd web && BOTSTER_PYTHON=$(CURDIR)/$(BIN)/python npm test

DEMO_ENV := BOTSTER_HOME=$(DEMO)/home BOTSTER_RUNTIME_DIR=$(DEMO)/run BOTSTER_WORKTREE_BASE=$(DEMO)/worktrees

# Starts the demo, or comes back to it after a detach.
run: $(STAMP) $(WEB_STAMP)
	$(DEMO_ENV) $(BIN)/python -m botster.demo $(DEMO)

# Stops the demo's hub and its agents' sessions (they outlive the hub otherwise).
stop:
	@if [ -x $(BIN)/python ] && [ -d $(DEMO)/repo ]; then \
		$(DEMO_ENV) $(BIN)/python -m botster.cli stop --repo $(DEMO)/repo --sessions; fi

test: $(STAMP) $(WEB_STAMP)
	$(BIN)/ruff check botster tests bench harness
	$(BIN)/ruff format --check botster tests bench harness
	cd web && BOTSTER_PYTHON=$(CURDIR)/$(BIN)/python npm test
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check botster tests bench harness

fmt: $(STAMP)
	$(BIN)/ruff format botster tests bench harness
	$(BIN)/ruff check --fix botster tests bench harness

clean: stop
	rm -rf $(VENV) $(DEMO) .pytest_cache web/node_modules
	find botster/relay/static -mindepth 1 ! -name .gitkeep -delete
