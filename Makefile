# Two commands do everything on a fresh machine with Python 3.12 (see README.md):
#   make demo   set up .venv, render the World's Fair storyboard on the offline tiny model, stitch the MP4
#   make test   set up .venv and run the test suite
PYTHON ?= python3.12
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/worlds-fair

.PHONY: demo test venv clean

demo: $(VENV)/.installed
	$(BIN)/ttlesson video worlds-fair --model tiny --out $(OUT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks]"
	touch $@

clean:
	rm -rf $(VENV) out .pytest_cache
