# The README's two Quickstart commands: `make demo` and `make test`. Each does all set-up.
.PHONY: setup demo test lint bench parity

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/aedfast demo

test: setup
	.venv/bin/python -m pytest tests
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
