# Set-up and everyday tasks. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format bench clean browser

# The viewer's browser test drives Debian's Chromium through Playwright (never a downloaded
# browser). Installed once, as root or through sudo.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Plain torch/torchvision from the registry (never the 2.13.0 CPU wheel: torchvision's
# compiled operators fail to load against it).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bcf]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/olmap demo --out olmap-demo

test: $(VENV)/.installed-dev lint browser
	OLMAP_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the viewer's browser test"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check olmap tests tools
	$(BIN)/ruff format --check olmap tests tools

format: $(VENV)/.installed-dev
	$(BIN)/ruff format olmap tests tools
	$(BIN)/ruff check --fix olmap tests tools

bench: $(VENV)/.installed
	$(BIN)/python tools/bench_synth.py --sizes 4096 8192 20000 --baseline 4096 8192

clean:
	rm -rf $(VENV) olmap-demo bench-out .pytest_cache .ruff_cache
