# The README's two Quickstart commands: `make demo` and `make test`. Each does all set-up.
.PHONY: setup setup-anomalib demo test lint bench parity

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/aedfast demo

# anomalib for tests/test_anomalib.py (the aedfast[anomalib] extra), installed with torch pinned
# to the installed version: PyPI's newest torchvision would otherwise replace it (a CPU torch by
# a multi-GB CUDA build). Skipped when anomalib and PyAV are already there.
setup-anomalib: setup
	.venv/bin/python -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('anomalib') and u.find_spec('av')))" \
	  || .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[anomalib]" \
	       "torch==$$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')"

# AEDFAST_REQUIRE_ANOMALIB=1: the anomalib tests fail, instead of skipping, without anomalib
test: setup-anomalib
	AEDFAST_REQUIRE_ANOMALIB=1 .venv/bin/python -m pytest tests
	.venv/bin/ruff check aedfast kernels tests bench

lint: setup
	.venv/bin/ruff check aedfast kernels tests bench

bench: setup
	.venv/bin/aedfast bench

# Parity with the official implementation (tests/test_official_parity.py): needs a checkout of
# ristea/aed-mae, e.g. `make parity AEDFAST_OFFICIAL_REPO=/path/to/aed-mae`; installs einops.
parity: setup
	.venv/bin/python -c "import einops" 2>/dev/null || .venv/bin/python -m pip install -q -e ".[official]"
	AEDFAST_OFFICIAL_REPO=$(AEDFAST_OFFICIAL_REPO) .venv/bin/python -m pytest tests/test_official_parity.py
