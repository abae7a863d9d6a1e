# The two commands a newcomer needs: `make demo` and `make test`. Every target sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := convert,loadtest,k8s,bench,edge,cloud,dev

.PHONY: demo serve test lint bench build clean help checkov

help:
	@echo "make demo   build the model repository, serve it, send requests, run an SLO load test"
	@echo "make test   the whole test suite against the real server"
	@echo "make serve  serve model_repository/ on 127.0.0.1:8000 (HTTP) / 8001 (gRPC) / 8002 (metrics)"
	@echo "make bench  benchmark the pipeline against in-process and hand-written baselines"
	@echo "make lint   ruff and mypy"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed"'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $$($(BIN)/python -c 'import sys; print("-c constraints.txt" if sys.version_info[:2] == (3, 11) else "")') -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

# checkov pins dependencies that clash with the project's: it gets its own environment.
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV): helm/checkov-requirements.txt
	test -d .venv-checkov || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet -r helm/checkov-requirements.txt
	touch $(CHECKOV)

checkov: $(CHECKOV)

build: $(STAMP)
	$(BIN)/tritonctl build all

demo: build
	$(BIN)/python scripts/demo.py

serve: build
	$(BIN)/tritonctl serve

# The models and edge bundles are built before pytest starts: inside it, the first test's setup
# would build them all under that test's timeout.
test: $(STAMP) $(CHECKOV) build
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: build
	$(BIN)/tritonctl bench

clean:
	rm -rf $(VENV) .venv-checkov reports .pytest_cache .mypy_cache .ruff_cache
