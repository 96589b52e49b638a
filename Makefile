# `make demo` and `make test` set up .venv on first use (idempotent: a stamp file records
# that the current requirements are installed) and run inside it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow gpu-check gpu-wheels lint format clean

setup: $(STAMP)

# torch 2.14.1 from PyPI is a CUDA build: with its NVIDIA libraries the venv takes about 6.1 GB.
VENV_GB := 6.2

$(STAMP): requirements.txt setup.py tools/install_detectron2.py
	@$(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 2**30; \
	sys.exit(f'make setup: {free:.1f} GB free here, .venv needs about $(VENV_GB) GB (torch and its CUDA libraries); free some disk first') \
	if free < $(VENV_GB) and not __import__('os').path.exists('$(VENV)/bin/torchrun') else None"
	@# An official detectron2 importable by $(PYTHON) is reused through system site-packages.
	test -x $(PY) || $(PYTHON) -m venv $$($(PYTHON) -c "import detectron2" 2>/dev/null && echo --system-site-packages) $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) tools/distill.py --synthetic

test: setup
	$(PY) -m pytest -q tests

test-slow: setup
	$(PY) -m pytest -q -m slow tests

# On a machine with an NVIDIA GPU: the CUDA tests and the benchmark at the paper's sizes
# (dev/gpu_check.sh says which Python it uses; results in output/gpu_check).
gpu-check:
	bash dev/gpu_check.sh

# Here, with the package registry: the wheels gpu-check installs on an offline GPU machine (.whl/).
gpu-wheels:
	bash dev/gpu_wheels.sh

# black and isort at line length 100, as detectron2 (pyproject.toml), and flake8 (.flake8: pyflakes'
# checks, 100-character lines); installed into .venv on first use
LINTERS := 'black>=24,<27' 'isort>=5,<10' 'flake8>=7,<8'

lint: setup
	$(PY) -m pip install -q $(LINTERS)
	$(PY) -m black --check --quiet . && $(PY) -m isort --check-only --quiet .
	$(PY) -m flake8 wsd_distill tools dev tests datasets setup.py

format: setup
	$(PY) -m pip install -q $(LINTERS)
	$(PY) -m black --quiet . && $(PY) -m isort --quiet .

clean:
	rm -rf $(VENV) output
