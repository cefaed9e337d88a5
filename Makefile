# ca15-kit: `make install` once, then `make test`, `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
IMPL   ?= reference
JOBS   ?= 2

.PHONY: install test bench seed-cells skeleton coverage mutants calibrate points release grade-examples gradescope gradescope-check notebook clean

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
SANDBOX ?= $(shell $(PY) -c "from grader.judge.sandbox import check_bwrap; check_bwrap('$(abspath $(PY))')" >/dev/null 2>&1 && echo --worker-sandbox=bwrap)
test:
	$(PY) -m grader.authoring.generate --check
	CI=1 $(PY) -m pytest -n $(JOBS) --dist loadscope -q tests --impl=$(IMPL) $(SANDBOX)

# Regenerate skeleton/ from reference/ (commit the result).
skeleton:
	$(PY) -m grader.authoring.generate

# Mutation run: every solution region, stubbed alone, must make a graded test fail. Writes the lock file
# docs/coverage.json (commit it); the kit's test checks it against reference/ and the graded tests.
coverage:
	$(PY) -m grader.authoring.coverage --jobs $(JOBS)

# Realistic mutants inside every solution region (sign, off-by-one, mask, detach, ...): which graded test
# catches each. Writes docs/mutants.md and docs/mutants.json (commit both).
mutants:
	$(PY) -m grader.authoring.mutants --jobs $(JOBS)

# Convergence calibration: every convergence test tried on SEEDS seeds against the reference and PERTURBED_SEEDS
# against each of two perturbed references (extra random draws; nudged initial parameters); the table goes to
# docs/calibration.md.
SEEDS ?= 30
PERTURBED_SEEDS ?= 15
calibrate:
	$(PY) -m grader.authoring.calibrate --seeds $(SEEDS) --perturbed-seeds $(PERTURBED_SEEDS) --jobs $(JOBS) --out docs/calibration.md

points:
	$(PY) -m grader.authoring.points

# The student release: dist/student/ (skeleton, notebook, public tests, student README and Makefile), built only
# after the notebook ran on the students' full budget against the reference (make test runs its grading budget).
release:
	$(MAKE) notebook IMPL=reference
	$(PY) -m grader.authoring.release --out dist/student

# The TA's main job on the bundled examples (reference, skeleton, partial, crashing): prints the gradebook.
grade-examples:
	$(PY) -m grader.authoring.examples --out build/examples --jobs $(JOBS)

# Gradescope's autograder.zip.
gradescope:
	$(PY) -m grader gradescope build --out build/autograder.zip

# Gradescope for real (root, mmdebstrap, about 15 minutes and 3 GB per suite; not part of `make test`): a fresh
# Debian image per suite, setup.sh in it, then run_autograder on the reference and the skeleton in a 1-CPU,
# 1.5 GiB cgroup, with namespaces refused (Docker's default) and allowed. SUITES="bookworm trixie" for more;
# WHEELS=DIR when PyTorch's CPU index is unreachable (default: pip's find-links folder, and it says so).
SUITES ?= bookworm
gradescope-check:
	@command -v mmdebstrap >/dev/null || { echo "installing mmdebstrap (builds the fresh image) with apt-get ..."; apt-get install -y -qq mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }; }
	$(PY) -m grader.authoring.gradescope_check --suites $(SUITES) $(if $(WHEELS),--wheels $(WHEELS))

# Execute the assignment notebook against IMPL (relative to this folder, or absolute); the executed copy lands in build/.
notebook:
	$(PY) -m grader.sandboxed.notebook notebooks/CA15.ipynb --impl "$(abspath $(IMPL))" --out build/CA15.executed.ipynb

# Speed figures of IMPL, then what grading the bundled correct submission costs (CPU-seconds, peak memory,
# stage times, the ten most expensive tests; about 5 minutes), then the similarity report's time on 50
# generated submissions (about 2 minutes).
bench:
	$(PY) tests/bench/run.py --impl=$(IMPL)
	$(PY) tests/bench/grading_cost.py
	$(PY) tests/bench/similarity_time.py

# Run the seed notebook's calls (cells 1-13) against IMPL and print what they print.
seed-cells:
	$(PY) -m grader.authoring.seed_cells --impl=$(IMPL)

clean:
	rm -rf build dist .pytest_cache .hypothesis
