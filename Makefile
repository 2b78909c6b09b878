# Two commands set everything up: `make demo` and `make test`.
# The virtual environment is created on first use (about 2 minutes: torch).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install browser demo test quick lint format smoke bench gpu-wheels clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(INSTALLED)

# Debian's chromium for the HTML report's browser test (tests/test_html_browser.py skips
# without it). Installs nothing when a chromium is already on PATH; uses sudo when not root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}
	@chromium --version 2>/dev/null

demo: $(INSTALLED)
	$(BIN)/losscmp run --config configs/synthetic.yaml

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The quick subset (about 2.5 minutes on 2 cores): no long end-to-end runs, Ray, MLflow or browser.
quick: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow and not ray and not mlflow and not browser"

smoke: $(INSTALLED)
	$(BIN)/losscmp run --config configs/smoke.yaml

bench: $(INSTALLED)
	$(BIN)/python benchmarks/losses.py

# Wheels for a lent GPU machine (Python 3.12, no network there): its image has torch,
# timm and the rest, not segmentation-models-pytorch. Carry .whl; benchmarks/gpu.sh
# installs what it finds there.
gpu-wheels: $(INSTALLED)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux2014_x86_64 -d .whl \
	  "segmentation-models-pytorch==$$($(BIN)/python -c 'import segmentation_models_pytorch as smp; print(smp.__version__)')"
	@ls .whl

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
