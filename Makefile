# `make demo` and `make test` set up .venv on first use (idempotent: a stamp file records
# that the current requirements are installed) and run inside it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py tools/install_detectron2.py
	@# An official detectron2 importable by $(PYTHON) is reused through system site-packages.
	test -x $(PY) || $(PYTHON) -m venv $$($(PYTHON) -c "import detectron2" 2>/dev/null && echo --system-site-packages) $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q tests

test-slow: setup
	$(PY) -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) output
