# blockdns — developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help setup run test lint format bench system-deps clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "blockdns needs Python 3.11 or newer"'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install blockdns with its dev tools

run: setup ## serve with the built-in defaults (127.0.0.1:1053 and [::1]:1053, recursive, block all AI)
	$(BIN)/blockdns serve

system-deps: ## install the Debian tools the tests and benchmark use (dnsmasq, unbound, bind9-utils, dnsperf, chromium)
	@bash tests/system-deps.sh

test: setup system-deps ## lint and type-check the code, lint the catalogue, then run the whole test suite
	$(BIN)/ruff check blockdns tests bench
	$(BIN)/mypy blockdns
	$(BIN)/blockdns lists lint
	$(BIN)/pytest -q

lint: setup ## ruff (lint + format check) and the catalogue lint
	$(BIN)/ruff check blockdns tests bench
	$(BIN)/ruff format --check blockdns tests bench
	$(BIN)/mypy blockdns
	$(BIN)/blockdns lists lint

format: setup ## format the code with ruff
	$(BIN)/ruff format blockdns tests bench
	$(BIN)/ruff check --fix blockdns tests bench

bench: setup system-deps ## blockdns vs dnsmasq and Unbound with dnsperf on loopback, then DoT and DoH vs Unbound (see bench/README.md)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/encrypted.py

clean: ## remove the virtualenv, caches and runtime state
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis var bench/out
