# Every target installs what it needs first: a fresh clone needs only `make demo` or `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test bench chromium clean-venv

setup: $(STAMP)

# pip (not uv/poetry) takes torch and torchvision from this machine's disk; a newer pip
# backtracks far less on this dependency set. constraints.txt pins every transitive package.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==26.3
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/headshot demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

# Debian's Chromium for the review queue's browser tests and benchmark (never a downloaded
# browser build). The test set-up installs it too when it is missing.
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -q chromium)

bench: $(STAMP) chromium
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
