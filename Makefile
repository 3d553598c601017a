# `make demo` and `make test` each set up .venv on a fresh machine, then run.
# The venv installs the versions in constraints.txt, the set the suite last passed with; `make lock`
# refreshes that file from the newest releases after the suite passes on them (`make test-latest`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LATEST := .venv-latest
# The CPU build of torch installs from local disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
EXTRAS := test

.PHONY: demo test bench lock test-latest clean

$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/preimage demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# A fresh venv with the newest releases that pyproject.toml admits (torch stays pinned), then the suite.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet $(TORCH)
	$(LATEST)/bin/python -m pip install --quiet --upgrade -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(highspy|numpy|scipy|onnx|onnxruntime|numba)=='
	$(LATEST)/bin/python -m pytest -q

# Lock what test-latest just passed with (written only when the suite passed).
lock: test-latest
	{ echo "# Versions the suite last passed with (make lock, $$(date -u +%Y-%m-%d), Python $$($(LATEST)/bin/python -c 'import platform; print(platform.python_version())'))."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable | sed -e 's/+cpu$$//' | grep -v '^#'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) $(LATEST) build src/*.egg-info .pytest_cache
