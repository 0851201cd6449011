# The README's two Quickstart commands: `make demo` and `make test`. Each does all set-up.
.PHONY: setup demo test lint bench

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
