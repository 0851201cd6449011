"""Import preflight: import every module of the library (aedfast, aedfast.kernels) and of the
benches (bench/), and report each failure, before a device run spends minutes on stages that
would die at their first import.

Usage: python -m bench.preflight   (exit code 1 when a module fails to import; run from the
repository root). The extras the device run needs are checked too: pytest-benchmark (the
bench suites' `benchmark` fixture) must import; nvidia-ml-py (power) is reported if absent.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_EXTRAS = ("pytest", "pytest_benchmark", "numpy", "torch")
OPTIONAL_EXTRAS = {"pynvml": "GPU power (nvidia-ml-py)", "triton": "the Triton kernels",
                   "matplotlib": "results.png"}


def library_modules() -> tuple[list[str], list[tuple[str, str]]]:
    """Every importable module name under the aedfast package (aedfast.kernels included),
    and the (name, error) of packages that failed while walking."""
    errors: list[tuple[str, str]] = []
    import aedfast

    names = ["aedfast"]
    for info in pkgutil.walk_packages(aedfast.__path__, "aedfast.",
                                      onerror=lambda n: errors.append((n, _last_error()))):
        if not info.name.endswith(".__main__"):  # importing it would run the CLI
            names.append(info.name)
    return names, errors


def bench_modules() -> list[str]:
    return sorted(f"bench.{p.stem}" for p in (ROOT / "bench").glob("*.py")
                  if p.stem != "__init__")


def _last_error() -> str:
    exc = sys.exc_info()[1]
    return f"{type(exc).__name__}: {exc}" if exc else "unknown error"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    failures: list[tuple[str, str]] = []
    try:
        names, walk_errors = library_modules()
        failures += walk_errors
    except Exception:
        names, walk_errors = [], []
        failures.append(("aedfast", _last_error()))
        traceback.print_exc()
    names += [n for n in bench_modules() if n not in names]
    for name in REQUIRED_EXTRAS:
        names.append(name)
    ok = 0
    for name in dict.fromkeys(names):
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
            ok += 1
            print(f"ok    {name} ({time.perf_counter() - t0:.2f} s)")
        except BaseException:  # a module calling sys.exit() or pytest.skip() at import, too
            failures.append((name, _last_error()))
            print(f"FAIL  {name}: {failures[-1][1]}")
            traceback.print_exc(limit=-3)
    for name, what in OPTIONAL_EXTRAS.items():
        try:
            importlib.import_module(name)
        except Exception:
            print(f"note  {name} does not import: no {what} ({_last_error()})")
    print(f"preflight: {ok} modules imported, {len(failures)} failed"
          + "".join(f"\n  {n}: {e}" for n, e in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
