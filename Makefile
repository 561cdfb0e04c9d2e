# The verbs a user types. Every target installs what it needs itself.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3

.PHONY: help venv build test unit-test lint fmt clean

help:
	@echo "make test    every test: format, lint, unit tests, each function against a local AWS emulator"
	@echo "make build   debug build of the workspace"
	@echo "make lint    cargo fmt --check and cargo clippy -D warnings"
	@echo "make fmt     format the code"
	@echo "make clean   remove build output and the tool venv"

# Python tools at exact pins, in a project venv.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

build:
	cargo build --workspace

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Unit tests only: no emulator needed.
unit-test:
	cargo test --workspace --lib --bins

# Everything. tests/with-moto starts moto on a free 127.0.0.1 port and stops
# it by its PID when cargo test ends, passes or fails.
test: venv lint
	tests/with-moto cargo test --workspace --no-fail-fast

clean:
	cargo clean
	rm -rf $(VENV)
