# FeatureLens: the two commands are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CHROMIUM ?= /usr/bin/chromium
PORT ?= 8050

.PHONY: demo test install install-test chromium redis serve worker clean-demo data go-data

# The venv is rebuilt only when pyproject.toml changes (stamp files).
$(VENV)/.stamp-install: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-install
	$(PIP) install --quiet -e '.[test,scvi,bench]'
	touch $@

install: $(VENV)/.stamp-install
install-test: $(VENV)/.stamp-test

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing Chromium (Debian package) for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@$(CHROMIUM) --version

# Redis for the scale-out tests and for `featurelens worker` (Debian package redis-server).
redis:
	@if ! command -v redis-server >/dev/null; then \
	  echo "installing Redis (Debian package redis-server) for the scale-out tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; \
	fi
	@redis-server --version

demo: install
	$(VENV)/bin/featurelens demo --port $(PORT)

serve: install
	$(VENV)/bin/featurelens serve --port $(PORT)

worker: install
	$(VENV)/bin/featurelens worker

test: install-test chromium redis
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

data: install
	$(PY) scripts/build_pbmc.py

go-data: install
	$(PY) scripts/build_go.py

clean-demo:
	rm -rf analyses/demo analyses/demo-pbmc68k
