# Two commands for a fresh machine (see README.md):
#   make demo   set up .venv, then run the main job on the embedded default
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A local folder of wheels (this development image keeps the CPU build of torch there); elsewhere PyPI alone.
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
DEMO_OUT ?= demo-out

.PHONY: demo test setup browser clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(WHEELS) -c constraints.txt -e '.[all]'
	touch $@

setup: $(BIN)/.installed browser

# Headless Chromium for the browser tests of `latenthdr view` (Debian's package, as root); without it they skip.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: could not install chromium (needs root and apt-get); the browser tests of latenthdr view skip"

demo: $(BIN)/.installed
	$(BIN)/latenthdr demo -o $(DEMO_OUT) --overwrite

test: $(BIN)/.installed browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .hypothesis
