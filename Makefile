# ca15-kit: `make install` once, then `make test`, `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
IMPL   ?= reference
JOBS   ?= 2

.PHONY: install test test-kit bench seed-cells clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The pinned grading environment (constraints.txt) plus the kit itself, editable.
install: $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'

# Graded tests against IMPL (default: reference), plus the kit's own tests.
test:
	CI=1 $(PY) -m pytest -n $(JOBS) -q tests --impl $(IMPL)

bench:
	$(PY) tests/bench/run.py --impl $(IMPL)

# Run the seed notebook's calls (cells 1-13) against IMPL and print what they print.
seed-cells:
	CA15_IMPL=$(IMPL) $(PY) tests/bench/seed_cells.py

clean:
	rm -rf build dist .pytest_cache .hypothesis
