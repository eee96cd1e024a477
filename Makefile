# Two commands matter on a fresh machine: `make demo` and `make test`. Both create the venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test-packages test system-test lint freeze demo airflow bench clean

setup: $(STAMP)

# Re-installs only when a pin changes; the stamp makes `setup` a no-op otherwise.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==25.3 setuptools==84.2.1
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $(STAMP)

# What the tests need beyond pip: Debian's chromium (the UI tests drive it headless) and docker-compose
# (the compose file check). Installed when missing (as root, with apt-get); otherwise named.
test-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (Debian packages the tests need)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the tests need$$missing: install them (sudo apt-get install -y$$missing) and run make test again" >&2; \
	    exit 1; \
	  fi; \
	fi

# The system tests (real Airflow components as processes, minutes each) run apart: `make system-test`.
test: setup test-packages
	$(BIN)/python -m pytest -m "not system" $(PYTEST_ARGS)

# Scheduler, dag-processor, triggerer, api-server (and Celery workers) as processes; prints timings.
system-test: setup test-packages
	$(BIN)/python -m pytest tests/system -m system --durations=0 $(PYTEST_ARGS)

# The nightly loan review end to end on SQLite against the bundled emulator; prints the run report.
demo: setup
	$(BIN)/python -m claude_demo.run $(DEMO_ARGS)

# Every benchmark in bench/, one after the other; figures printed and kept in bench/results/
# (<name>.log, and <name>.json: the last line). BENCH_ARGS="--only cost,e2e_nightly" runs a subset.
bench: setup
	$(BIN)/python bench/_run_all.py $(BENCH_ARGS)

# airflow standalone on SQLite with the project's DAGs and the emulator; prints the UI address and login.
airflow: setup
	$(BIN)/python -m claude_demo.standalone $(AIRFLOW_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Re-resolves the pinned direct dependencies and freezes the full set (run after changing a pin).
freeze:
	rm -rf .freeze-venv
	$(PYTHON) -m venv .freeze-venv
	.freeze-venv/bin/pip install --quiet pip==25.3 setuptools==84.2.1
	.freeze-venv/bin/pip install --quiet -r requirements.txt -r requirements-dev.txt
	.freeze-venv/bin/pip freeze --exclude-editable | sort -f > constraints.txt
	rm -rf .freeze-venv

clean:
	rm -rf $(VENV) .pytest_cache .demo .airflow
