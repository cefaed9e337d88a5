# ca15-kit: `make install` once, then `make test`, `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
IMPL   ?= reference
JOBS   ?= 2

.PHONY: install test bench seed-cells skeleton coverage points release grade-examples gradescope notebook clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The pinned grading environment (constraints.txt) plus the kit itself, editable; and bubblewrap, the sandbox
# every run of submission code needs (installed with apt-get when we are root on Debian/Ubuntu, else explained).
install: $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@sh grader/install_bwrap.sh

# Graded tests against IMPL (default: reference), plus the kit's own tests. Workers run in bubblewrap, as in
# the grader, wherever it can start (SANDBOX= to run them as plain processes).
SANDBOX ?= $(shell $(PY) -c "from grader.sandbox import check_bwrap; check_bwrap('$(abspath $(PY))')" >/dev/null 2>&1 && echo --worker-sandbox=bwrap)
test:
	$(PY) -m grader.generate --check
	CI=1 $(PY) -m pytest -n $(JOBS) -q tests --impl=$(IMPL) $(SANDBOX)

# Regenerate skeleton/ from reference/ (commit the result).
skeleton:
	$(PY) -m grader.generate

# Mutation run: every solution region, stubbed alone, must make a graded test fail (a kit test runs it too).
coverage:
	$(PY) -m grader.generate --coverage --jobs $(JOBS)

points:
	$(PY) -m grader.generate --points

# The student release: dist/student/ (skeleton, notebook, public tests, student README and Makefile).
release:
	$(PY) -m grader.release --out dist/student

# The TA's main job on the bundled examples (reference, skeleton, partial, crashing): prints the gradebook.
grade-examples:
	$(PY) -m grader.examples --out build/examples --jobs $(JOBS)

# Gradescope's autograder.zip.
gradescope:
	$(PY) -m grader gradescope build --out build/autograder.zip

# Execute the assignment notebook against IMPL; the executed copy lands in build/.
notebook:
	$(PY) -m grader.notebook notebooks/CA15.ipynb --impl $(IMPL) --out build/CA15.executed.ipynb

bench:
	$(PY) tests/bench/run.py --impl=$(IMPL)

# Run the seed notebook's calls (cells 1-13) against IMPL and print what they print.
seed-cells:
	$(PY) -m grader.seed_cells --impl=$(IMPL)

clean:
	rm -rf build dist .pytest_cache .hypothesis
