# EmoCAST make targets. Everything installs through scripts/install.sh (the single install path).
#
#   make demo          install, fetch the inference models, render examples/ into outputs/
#   make test          install, run the test suite (tiny offline models; no GPU, no network)
#   make install       create .venv with the pinned dependencies and the package (editable)
#   make download      fetch the missing models of MODELS_GROUP (default: inference)
#   make check-models  report present / missing / incomplete for MODELS_GROUP, exit 1 if any is missing
#
# Variables: MODELS_GROUP=inference|train|eval|all, TESTS=tests (files/folders), PYTEST_ARGS="-k name -x",
#            EXTRAS="preprocess separator clip train eval demo"
SHELL := bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.emocast-installed
MODELS_GROUP ?= inference
EXTRAS ?= preprocess separator clip train eval demo
TESTS ?= tests
PYTEST_ARGS ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help demo test install download check-models

help:
	@sed -n 3,10p Makefile | sed 's/^# \{0,1\}//'

install: $(STAMP)

$(STAMP): scripts/install.sh setup.py requirements.txt $(wildcard requirements/*.txt)
	bash scripts/install.sh --extras "$(EXTRAS)"
	@touch $@

download: $(STAMP)
	$(PYTHON) scripts/download_models.py --group $(MODELS_GROUP)

check-models: $(STAMP)
	$(PYTHON) scripts/download_models.py --check --group $(MODELS_GROUP)

demo: $(STAMP)
	$(PYTHON) scripts/download_models.py --group inference
	bash inference.sh

test: $(STAMP)
	@rc=0; $(PYTHON) -m pytest $(TESTS) -q -ra $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; exit $$rc
