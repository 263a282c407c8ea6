# Two commands do everything on a fresh machine with Python 3.12 (see README.md):
#   make demo   set up .venv, render the World's Fair storyboard on the offline tiny model, stitch the MP4
#   make test   set up .venv and run the test suite and the notebooks (nbval)
PYTHON ?= python3.12
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/worlds-fair

.PHONY: demo test lab kernel venv clean

demo: $(VENV)/.installed
	$(BIN)/ttlesson video worlds-fair --model tiny --out $(OUT)

# The notebooks run under nbval with the offline tiny model in a fresh work folder, as a learner's would.
test: $(VENV)/.installed
	TTLESSON_MODEL=tiny TTLESSON_BACKEND=auto TTLESSON_WORKDIR="$$(mktemp -d)" \
	  $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env --durations=10

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/

# Register the Python that runs make (e.g. tt-metal's python_env, activated) as a Jupyter kernel for the notebooks.
kernel:
	python3 -m ttlesson.cli kernel install

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks]"
	touch $@

clean:
	rm -rf $(VENV) out .pytest_cache
