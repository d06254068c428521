# The two commands README gives, on a fresh machine with Python >= 3.10 and a C compiler:
#
#   make run    install what is missing, then the main job (a tuning run on the built-in corpus)
#   make test   install what is missing, then `ruff check .` and the tests
#
# Both use the project-local virtual environment .venv. It is created and the project installed
# into it (building the Cython extension) only when .venv is missing or pyproject.toml, setup.py
# or the extension's sources changed since the last install, so a second call starts at once.
# The install ends by compiling the numba kernels (fastrnn.tuning.warm_up), so that the first
# run's time budget goes to training, not to compiling.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The main job's run file; runs/ is gitignored. `make run` again continues it (or reports it
# finished); delete the file to start over.
RUN_FILE := runs/main.jsonl
# The default tuner: successive halving on the held-out objective (networks scored on held-out
# text; the best continue training, the answer's network trained longest), in float32, for
# 4 minutes of wall-clock time, the saved network included.
MAIN_JOB := tune --budget-seconds 240

.PHONY: run test

run: $(INSTALLED)
	@mkdir -p $(dir $(RUN_FILE))
	@if [ -f $(RUN_FILE) ]; then \
		$(BIN)/fastrnn tune --resume $(RUN_FILE); \
	else \
		$(BIN)/fastrnn $(MAIN_JOB) --out $(RUN_FILE); \
	fi

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(INSTALLED): pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd ext/*.h)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,optuna,dask]"
	$(BIN)/python -m fastrnn.tuning.warm_up
	@touch $@
