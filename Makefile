# Two commands do everything on a fresh machine with Python 3.12 (see README.md):
#   make demo   set up .venv, render the World's Fair storyboard on the offline tiny model, stitch the MP4
#   make test   set up .venv and Chromium, lint (ruff), type-check (mypy), run the test suite, the notebooks (nbval)
#               and the notebooks in JupyterLab in Chromium (tests/browser): what CI runs
# For developers: make check (lint, mypy and the fast tests, no notebooks, browser or slow tests; under 2 minutes).
PYTHON ?= python3.12
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/worlds-fair

CHROMIUM ?= /usr/bin/chromium
INSTALL_CHROMIUM := apt-get install -y chromium

.PHONY: demo test check lab kernel venv chromium clean

demo: $(VENV)/.installed
	$(BIN)/ttlesson video worlds-fair --model tiny --out $(OUT)

# The tests run on TEST_WORKERS pytest-xdist workers, a test file at a time; tests/conftest.py keeps the notebooks
# together on one worker (nbval first, then the browser). Three workers on two cores, because much of a worker's
# time is spent waiting for the processes it started (kernels, renders, Chromium). The offline tiny model, a fresh
# work folder and one fresh cache shared by the workers, nbval's kernels and the browser's JupyterLab.
# OMP_WAIT_POLICY=PASSIVE: torch's idle OpenMP threads would otherwise spin on the cores the other workers need
# (two tiny renders at once: 45 s spinning, 19 s passive, 16 s for one alone); the thread count, and so every
# pixel, stays as it is. Where the time went is written to test-output/durations.md (tools/test_durations.py).
TEST_WORKERS ?= 3
TEST_ENV = TTLESSON_MODEL=tiny TTLESSON_BACKEND=auto TTLESSON_WORKDIR="$$(mktemp -d)" \
	TTLESSON_CACHE="$$(mktemp -d)" TTLESSON_CHROMIUM=$(CHROMIUM) OMP_WAIT_POLICY=PASSIVE
PYTEST = $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test: $(VENV)/.installed chromium
	$(BIN)/ruff check ttlesson tests tools benchmarks
	$(BIN)/mypy
	@mkdir -p test-output
	$(TEST_ENV) $(PYTEST) tests notebooks --nbval-lax --nbval-current-env --durations=20 \
	  --junitxml=test-output/junit.xml; status=$$?; \
	  $(BIN)/python tools/test_durations.py test-output/junit.xml --out test-output/durations.md > /dev/null; \
	  echo "where the time went: test-output/durations.md"; exit $$status

# The inner loop: lint and every test not marked slow (end-to-end processes, kills, workers, training, the
# mock-cluster topologies), without the notebooks and the browser. make test runs all of it.
check: $(VENV)/.installed
	$(BIN)/ruff check ttlesson tests tools benchmarks
	$(BIN)/mypy
	$(TEST_ENV) $(PYTEST) tests -m "not slow and not browser" --ignore=tests/browser --durations=5

# An attendee's laptop: the package, JupyterLab and its kernel, and nothing the tests need (no pytest, Playwright,
# Ray, OpenVINO or ttnn). In a .venv that make test already set up, it uses that one.
lab: $(VENV)/.lab
	$(BIN)/jupyter lab notebooks/

$(VENV)/.lab: pyproject.toml
	@if [ -f $(VENV)/.installed ]; then touch $@; else \
	  $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --upgrade pip && \
	  $(BIN)/python -m pip install --quiet -e ".[notebooks]" && touch $@; fi

# Register the Python that runs make (e.g. tt-metal's python_env, activated) as a Jupyter kernel for the notebooks.
kernel:
	python3 -m ttlesson.cli kernel install

venv: $(VENV)/.installed

# The browser tests drive Debian's Chromium (Playwright's own browser downloads are not used). It is installed
# where that needs no question: as root, or in CI (with sudo); elsewhere this prints the one command to run,
# and the browser tests skip with it as their reason (under CI=true they fail instead).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -q && $(INSTALL_CHROMIUM); \
	elif [ -n "$$CI" ]; then sudo apt-get update -q && sudo $(INSTALL_CHROMIUM); \
	else echo "The browser tests need Chromium: sudo $(INSTALL_CHROMIUM)"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks]"
	touch $@

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache test-output
