# improvd: `make run` starts the daemon with the shipped model; `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages the tests use: a JACK server for real MIDI ports, a real MQTT broker, FluidSynth for demo audio,
# systemd-analyze to verify and rate the service unit.
TEST_DEBS := jackd2 mosquitto mosquitto-clients fluidsynth fluid-soundfont-gm systemd musescore3
RUN_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint lean-check test-corpus bench system-deps clean

run: $(VENV)/.installed
	$(BIN)/improvd run $(RUN_ARGS)

test: system-deps $(VENV)/.installed-dev lint lean-check
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole Essen collection through the encoding (minutes); `make test` runs a fixed sample of 640 tunes (erk5, boehme10, kinder0).
test-corpus: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m corpus

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/step_latency.py --json
	$(BIN)/python bench/timing.py --json

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install -q --upgrade pip

# The daemon alone, as the service installs it (a plain install: setuptools' editable mode prints notices);
# installed again when a source file changes.
$(VENV)/.installed: pyproject.toml $(wildcard improvd/*.py improvd/*/*.py) | $(VENV)/bin/python
	$(BIN)/pip install -q .
	touch $@

# Everything the tests need: the offline tools and training too, editable.
$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e ".[dev,train]"
	touch $@ $(VENV)/.installed

# A fresh virtual environment with the daemon's install alone: its size and that it runs (about 30 s).
lean-check: $(VENV)/.installed-dev
	$(BIN)/python tests/lean_install.py

system-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing python3-venv; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
