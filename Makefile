# The README's two commands. `make demo` runs the main job; `make test` runs the test suite.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
# The torchvision built against that torch (the dev extra's tests use its models). Installed in the same
# step as torch, so that installing the project never resolves a newer torchvision that replaces torch.
# Change both together, e.g. make test TORCH=torch==2.5.1 TORCHVISION=torchvision==0.20.1.
TORCHVISION ?= torchvision==0.28.0

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	@# The floor of pyproject.toml's requires-python (docs/architecture.md, "Python"), said before pip says less.
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 11) else "$(PYTHON) is Python %d.%d: evonorm-search needs 3.11 or newer (make PYTHON=python3.11 ...)" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, so the project's range is satisfied by the build chosen here (CPU by default).
	$(PIP) install --quiet "$(TORCH)" $(if $(TORCHVISION),"$(TORCHVISION)")
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/evonorm-search demo

test: install
	$(PY) -m pytest -n 2 --dist loadgroup --timeout 900

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy  # evonorm_search/, service/ and workers/, as [tool.mypy] in pyproject.toml says

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
