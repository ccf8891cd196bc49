# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv setup bench clean

$(STAMP): setup.cfg pyproject.toml
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
# deploy processes/.
setup: venv
	$(VENV)/bin/gridflow setup-demo

run: setup
	@echo "Demo logins (password demo123): lx_wgy1 网格员, lx_wgz1 网格长, lxz_pd 林西镇派单员, lxz_cg 城管, lxz_pcs 派出所"
	@echo "The web server arrives with issue 4; try: $(VENV)/bin/gridflow --help"

# Runs the suite on SQLite, or on PostgreSQL when DATABASE_URL is set.
test: venv
	$(PY) -m pytest

bench: venv
	$(PY) bench/step_cost.py

clean:
	rm -rf $(VENV) instance .pytest_cache
