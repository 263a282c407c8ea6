# Two commands do everything on a fresh machine with Python 3.12 (see README.md):
#   make demo   set up .venv, render the World's Fair storyboard on the offline tiny model, stitch the MP4
#   make test   set up .venv and Chromium, lint (ruff), run the test suite, the notebooks (nbval) and the
#               notebooks in JupyterLab in Chromium (tests/browser)
PYTHON ?= python3.12
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/worlds-fair

CHROMIUM ?= /usr/bin/chromium
INSTALL_CHROMIUM := apt-get install -y chromium

.PHONY: demo test lab kernel venv chromium clean

demo: $(VENV)/.installed
	$(BIN)/ttlesson video worlds-fair --model tiny --out $(OUT)

# Lint first (ruff, configured in pyproject.toml); then the notebooks run under nbval with the offline tiny model
# in a fresh work folder, as a learner's would.
test: $(VENV)/.installed chromium
	$(BIN)/ruff check ttlesson tests tools benchmarks
	TTLESSON_MODEL=tiny TTLESSON_BACKEND=auto TTLESSON_WORKDIR="$$(mktemp -d)" TTLESSON_CHROMIUM=$(CHROMIUM) \
	  $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env --durations=10

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/

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
	rm -rf $(VENV) out .pytest_cache test-output
