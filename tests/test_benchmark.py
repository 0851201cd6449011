"""`aedfast bench` finds the suites of a source checkout and says clearly when there is none
(an install from a wheel has no bench/ folder)."""

from pathlib import Path

import pytest

import aedfast.benchmark as benchmark
from aedfast.cli import main


def test_bench_dir_in_a_checkout():
    assert (benchmark.bench_dir() / "test_bench_e2e.py").is_file()


def test_bench_from_a_wheel_install_says_it_needs_a_checkout(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site-packages" / "aedfast"  # what a wheel install looks like
    site.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="needs a source checkout"):
        benchmark.bench_dir(site)
    real = benchmark.bench_dir

    monkeypatch.setattr(benchmark, "bench_dir", lambda: real(Path(site)))
    code = main(["bench", "--suite", "motion"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "needs a source checkout" in err[0]
