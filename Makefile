# exporthub: `make run` serves on 127.0.0.1:8000, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: install run test lint bench clean vendor-web screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --silent
	touch $(NODE_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/exporthub serve --host 127.0.0.1 --port 8000

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest
	# The end-to-end tests again, on the backends of a many-node deployment.
	EXPORTHUB_TEST_DATABASE=postgres EXPORTHUB_TEST_BROKER=redis \
		$(PY) -m pytest -m "e2e and not cluster"

# The dashboard's copy of the npm client's browser build, with its license.
vendor-web: $(STAMP) $(NODE_STAMP)
	$(PY) scripts/vendor_centrifuge.py

# docs/dashboard-{desktop,phone}.png, taken by the page's layout test.
screenshots: $(STAMP)
	EXPORTHUB_SCREENSHOT_DIR=docs $(PY) -m pytest -q tests/test_e2e_web.py -k fits_the_screen

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests scripts
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache
