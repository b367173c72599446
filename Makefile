# dhcbench: set-up, tests and the demo. PYTHON can point at any Python >= 3.11.
PYTHON ?= python3
DHCBENCH = $(PYTHON) -m dhcbench

.PHONY: install test lint demo ensure gpu-check

# torch first, and only when it is missing, so an existing (e.g. CUDA) build is kept.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

# Looks the packages up without importing them (importing torch and mlflow takes seconds).
ensure:
	@$(PYTHON) -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('torch', 'dhcbench', 'pytest', 'medpy', 'mlflow')))" 2>/dev/null || $(MAKE) install

test: ensure
	$(PYTHON) -m pytest

lint: ensure
	$(PYTHON) -m ruff check dhcbench tests

# CPS and DHC on the embedded phantom (20 % labeled, seed 0), trained side by side, then
# the paper-style table (printed by the same process).
demo: ensure
	$(DHCBENCH) sweep phantom-demo --table

# The paper's configuration on a CUDA GPU, measured within a time budget (the reduced CPU
# form without one); writes gpu-check/gpu-check.json and gpu-check/gpu-check.md.
gpu-check: ensure
	$(PYTHON) -m dhcbench.benchmark.gpu_check --out gpu-check
