# Quick start: `make run` answers a prompt with the embedded model; `make test` runs the suite.
# Both create .venv and install everything they need themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= Why is the sky blue?
PYTEST_ARGS ?=

# llama-cpp-python compiles llama.cpp from source. Its default native build turns on every
# instruction set the build machine reports (AVX-512, AMX); on the virtual machines owl is
# tested on, that build crashed at the first batched decode. AVX2 runs on every x86-64 CPU
# of the last decade. pip caches the wheel it builds, so this compile happens once.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: run test test-fast bench lint clean system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/owl run smollm2 "$(PROMPT)"

# The speech tests speak with espeak-ng (a program owl's Piper voices run as a subprocess)
# and convert audio with ffmpeg; the UI tests drive a headless chromium (Playwright cannot
# download a browser build here). Debian packages: installed with apt-get when missing (as
# root, or through sudo when it asks for no password).
SYSTEM_PROGRAMS := espeak-ng ffmpeg chromium
system-packages:
	@missing=""; for program in $(SYSTEM_PROGRAMS); do \
	  command -v $$program >/dev/null 2>&1 || missing="$$missing $$program"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "make test needs:$$missing (apt-get install$$missing)"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq$$missing; \
	fi

test: $(VENV)/.installed-dev system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: no model loads, no servers (tests/conftest.py marks those slow by what
# they call, so the lane cannot grow them unnoticed). Under 2 minutes on a 2-core machine.
test-fast: $(VENV)/.installed-dev system-packages
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/first_token.py
	$(BIN)/python bench/scan.py

clean:
	rm -rf $(VENV) .pytest_cache

# lint-imports checks the layers of DESIGN.md ([tool.importlinter] in pyproject.toml).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check owl tests bench scripts
	$(BIN)/ruff format --check owl tests bench scripts
	$(BIN)/lint-imports --no-cache
