# Two commands do all set-up on a fresh Linux machine with Python 3.11 (see README.md):
#   make book   build the HTML book into _build/html (needs no data and no GPU)
#   make test   run every test: unit tests (on TensorFlow and, beside it, on JAX in .venv-jax), the
#               installed wheel outside the repository, notebooks at quick scale, freshness,
#               strict book build
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The data directory: ../shared/data beside the checkout when it exists (CI's and the authors'
# layout); otherwise set MLBOOK_DATA yourself, or let the loaders download into the user cache.
MLBOOK_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export MLBOOK_DATA
CHAPTERS := $(sort $(wildcard chapters/*.ipynb))

.PHONY: book test test-jax unit wheel-check notebooks notebooks-a notebooks-b lint strict-book browser venv clean

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed

book: $(BIN)/.installed
	$(BIN)/python -m mlbook_utils.report
	$(BIN)/jupyter-book build . --keep-going
	@echo "Open _build/html/index.html"

# The TensorFlow and JAX unit tests run side by side: much of a unit test's time is Python and
# tracing on one core. On 2 cores the pair took 20 minutes (2026-12-05, TF 1193 s, JAX 1228 s)
# before the experiments' bookkeeping tests were marked plumbing (default backend only; see
# tests/conftest.py). --output-sync prints each one's log whole when it ends; --durations=25
# lists the slowest tests.
test: $(BIN)/.installed
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory -j2 --output-sync=target unit test-jax
	$(MAKE) --no-print-directory wheel-check notebooks strict-book browser

lint: $(BIN)/.installed
	$(BIN)/ruff check mlbook_utils tests chapters $(wildcard scripts)

unit: $(BIN)/.installed
	$(BIN)/python -m pytest tests --ignore=tests/browser --durations=25

# What a reader's (Colab's) non-editable `pip install` gets: build the wheel, install it into a
# fresh venv, import every submodule, run the exercise cells and chapter 2.1 (quick) outside the
# repository. About 2.5 minutes on 2 cores; nothing is left in the work tree.
wheel-check: $(BIN)/.installed
	bash scripts/check_wheel.sh $(BIN)/python

# No progress bars in CI: nbval waits only 5 s for a finished cell's last outputs, and a long
# cell's backlog of bar updates on a loaded machine once outlasted that (chapter 4.1, cell 9).
# The notebooks run in two halves side by side, like the unit tests: at quick scale much of a
# notebook's time is tracing, compiling and Python on one core. The first half is named (the
# longest notebooks first, about half of the time); every other chapter, new ones included,
# is in the second.
NOTEBOOKS_A := $(filter $(addprefix chapters/,06_1_learning_the_initialisation.ipynb \
	04_2_strong_baselines.ipynb 05_1_neural_turing_machine.ipynb 01_1_few_shot_episodes.ipynb \
	01_3_learned_optimizer.ipynb 02_1_siamese_networks.ipynb 04_1_relation_matching_networks.ipynb \
	09_1_task_agnostic.ipynb 09_2_meta_imitation.ipynb),$(CHAPTERS))
NOTEBOOKS_B := $(filter-out $(NOTEBOOKS_A),$(CHAPTERS))
NBVAL := MLBOOK_SCALE=quick TQDM_DISABLE=1 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider --durations=20

notebooks: $(BIN)/.installed
	$(MAKE) --no-print-directory -j2 --output-sync=target notebooks-a notebooks-b

notebooks-a: $(BIN)/.installed
	$(NBVAL) $(NOTEBOOKS_A)

notebooks-b: $(BIN)/.installed
	$(NBVAL) $(NOTEBOOKS_B)

strict-book: $(BIN)/.installed
	rm -rf _build
	$(BIN)/jupyter-book build . --warningiserror --keep-going

# Every page of the built book in Debian's Chromium (apt-get install chromium chromium-driver),
# driven by Playwright; screenshots go to _build/screenshots/.
browser: $(BIN)/.installed
	test -d _build/html || $(MAKE) --no-print-directory strict-book
	$(BIN)/python -m pytest tests/browser -v
	@echo "Screenshots: $(abspath _build/screenshots)"

# The unit tests on the JAX backend (CPU), in a separate environment: .venv-jax.
JAX_VENV ?= .venv-jax
$(JAX_VENV)/bin/.installed: requirements-jax.txt pyproject.toml
	test -x $(JAX_VENV)/bin/python || $(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/python -m pip install -q --upgrade pip
	$(JAX_VENV)/bin/python -m pip install -q -r requirements-jax.txt
	$(JAX_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-jax: $(JAX_VENV)/bin/.installed
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m pytest tests --ignore=tests/browser --durations=25

clean:
	rm -rf _build
