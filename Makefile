# The book's two commands: `make run` executes every notebook into build/, `make test` tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: run test lint unit nbval bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -e .
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/run_book.py $(NOTEBOOKS)

test: lint unit nbval

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ftutils tests scripts bench notebooks
	$(VENV)/bin/ruff format --check ftutils tests scripts bench notebooks

unit: $(VENV)/.installed
	$(PY) -m pytest tests

nbval: $(VENV)/.installed
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-p tests.nbval_stderr notebooks

bench: $(VENV)/.installed
	$(PY) bench/cached_features.py

clean:
	rm -rf build .pytest_cache
