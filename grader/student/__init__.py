"""What the student release ships besides the harness: the dashboard of ``make test`` and ``make submit``,
with the release's Makefile, README and pyproject."""
