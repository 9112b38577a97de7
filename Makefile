# Two commands for a fresh machine (see README.md):
#   make demo   set up .venv, then run the main job on the embedded default
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A local folder of wheels (this development image keeps the CPU build of torch there); elsewhere PyPI alone.
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
DEMO_OUT ?= demo-out

.PHONY: demo test setup clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(WHEELS) -c constraints.txt -e '.[all]'
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/latenthdr demo -o $(DEMO_OUT) --overwrite

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .hypothesis
