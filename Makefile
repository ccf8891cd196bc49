# The two commands: `make run` and `make test`. Everything else is a helper.
# The interpreter the virtualenv is made from: the distribution's python3 where it is 3.11 or
# newer and can make a virtualenv, else the first python3 on PATH. Debian's is built with
# profile-guided and link-time optimization and links libpython statically; a plain source
# build (pyenv's default: shared libpython, no PGO) spent ~10 % more CPU on the same requests
# and ~35 % more on a bare loop (docs/performance.md, session 22). PYTHON=... picks another;
# PYTHON_CANDIDATES=... changes the order tried.
PYTHON_CANDIDATES ?= /usr/bin/python3 python3
PYTHON ?= $(shell for p in $(PYTHON_CANDIDATES); do \
	$$p -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv setup bench clean

$(STAMP): setup.cfg pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.11+ that can make a virtualenv among $(PYTHON_CANDIDATES):" \
		"install python3 (3.11 or newer) with its venv module (Debian: python3-venv), or set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

venv: $(STAMP) $(NODE_STAMP)

# Create the SQLite database (or use DATABASE_URL), load the demo organisation,
# deploy processes/, and (once: --if-empty) a year of demo history for the dashboard.
DEMO_CASES ?= 2000
setup: venv
	$(VENV)/bin/gridflow setup-demo
	$(VENV)/bin/gridflow demo --cases $(DEMO_CASES) --if-empty
	$(VENV)/bin/gridflow metrics refresh

HOST ?= 127.0.0.1
PORT ?= 5000
WORKERS ?= 3   # cores + 1: measured best on 2 cores (docs/performance.md, "HTTP load")

run: setup
	@echo ""
	@echo "gridflow on http://$(HOST):$(PORT)/   API docs: http://$(HOST):$(PORT)/api/docs"
	@echo "Demo logins (password demo123):"
	@echo "  lx_wgy1  网格员 (新光社区第一网格)     lx_wgz1 网格长 (新光社区)"
	@echo "  lxz_pd   林西镇派单员                  lxz_cg 城管 / lxz_pcs 派出所 / lxz_sfs 司法所"
	@echo "  lxx_pd   林西县派单员                  lxx_dc 林西县督查 (auditor, read-only)"
	@echo ""
	@# the timer worker fires BPMN deadlines and reminders. Both run in the background and the
	@# shell waits for them, so that a stop (Ctrl-C, or a TERM sent to make alone, which make
	@# passes on to this shell) reaches both at once: a shell runs its traps only after a
	@# foreground child has exited, which left the server running and its port taken.
	$(VENV)/bin/gridflow worker --interval 5 & WORKER_PID=$$!; \
	$(VENV)/bin/gunicorn --config python:web.gunicorn_conf --workers $(WORKERS) --bind $(HOST):$(PORT) \
		--access-logfile - "web:create_app()" & WEB_PID=$$!; \
	trap 'kill $$WORKER_PID $$WEB_PID 2>/dev/null' EXIT INT TERM; \
	wait $$WEB_PID

# Runs the suite on SQLite, or on PostgreSQL when DATABASE_URL is set.
test: venv
	$(PY) -m pytest

bench: venv
	$(PY) bench/step_cost.py

clean:
	rm -rf $(VENV) instance .pytest_cache
