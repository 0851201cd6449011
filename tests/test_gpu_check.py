"""The GPU check (bench/gpu_check.sh, bench/gpu_check.py) cannot rot unnoticed: its plan fits
the device limits, its CPU rehearsal runs every stage and writes every result file, its
deadline guard kills a stage's whole process group, and a failed install stops the run with
the summary still written. The rehearsal runs the same stages and commands as a device run
(an import added to the library, a renamed bench or a changed option breaks it here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import gpu_check
from bench.summarize import device_line, write_summary

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHON"] = sys.executable
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def test_plan_fits_the_device_limits():
    for command, budget in (("core", 420), ("kernels", 240)):
        stages = gpu_check.PLAN[command]
        assert gpu_check.BUDGETS[command] == budget
        assert sum(s.limit for s in stages) + gpu_check.RESERVE_S <= budget
        assert len({s.name for s in stages}) == len(stages)
    assert max(gpu_check.BUDGETS.values()) < gpu_check.DEVICE_COMMAND_LIMIT_S
    proc = _run_script("--plan", timeout=60)
    assert proc.returncode == 0, proc.stderr
    sums = dict(re.findall(r"^  (core|kernels): stages \d+ s \+ reserve \d+ s = (\d+) s",
                           proc.stdout, re.M))
    assert int(sums["core"]) <= 420 and int(sums["kernels"]) <= 240
    for stages in gpu_check.PLAN.values():
        for s in stages:
            assert re.search(rf"^  {re.escape(s.name)} +{s.limit} s ", proc.stdout, re.M)


def test_device_commands_are_one_at_a_time():
    proc = _run_script("all", timeout=60)  # both together exceed one device command
    assert proc.returncode != 0 and "core or kernels" in proc.stderr


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    t0 = time.monotonic()
    proc = _run_script("--rehearse", "all", "--out", str(out), timeout=600)
    return out, proc, time.monotonic() - t0


def test_rehearsal_runs_every_stage_and_writes_the_results(rehearsal):
    out, proc, wall = rehearsal
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for name in ("results.json", "results.md", "results.png", "log.txt", "device.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "results.json").read_text())
    assert doc["rehearsal"] is True and doc["command"].startswith("bash bench/gpu_check.sh")
    for key in ("name", "torch", "triton", "python", "date"):
        assert doc["device"].get(key), key
    planned = [(c, s.name) for c, stages in gpu_check.PLAN.items() for s in stages]
    assert [(s["command"], s["name"]) for s in doc["stages"]] == planned
    for s in doc["stages"]:
        assert s["status"] == "passed" and s["rc"] == 0, s
        assert 0 < s["wall_s"] <= s["limit_s"], s
    assert set(doc["commands"]) == {"core", "kernels"}
    # every stage that must record rows did; the rows say they are a rehearsal
    for stages in gpu_check.PLAN.values():
        for s in stages:
            if s.rows:
                assert doc["rows"].get(s.rows), s.rows
                assert all(r.get("rehearsal") for r in doc["rows"][s.rows]), s.rows
    e2e = doc["rows"]["e2e"][0]
    assert e2e["power"].startswith("unavailable") and e2e["score_rel_err"] <= e2e["score_tol"]
    # every autotune entry of every kernel ran (the interpreter gets the whole lists)
    entries: dict[str, set] = {}
    for r in doc["rows"]["autotune"]:
        assert r["status"] == "ok", r
        entries.setdefault(r["kernel"], set()).add(r["config"])
    from bench.autotune_check import autotuned_kernels

    every = {name for name, _ in autotuned_kernels()}  # every @triton.autotune kernel
    assert {"_qkv_kernel", "_out_mlp_kernel", "_motion_kernel", "_motion_rows_kernel",
            "_filter_max_kernel", "_temporal_kernel"} <= every
    assert set(entries) == every
    assert all(len(c) >= 2 for c in entries.values()), entries
    md = (out / "results.md").read_text()
    for command, name in planned:
        assert re.search(rf"\| {command} \| {re.escape(name)} \| passed \| 0 \|", md), name
    assert "Skipped parts" in md and "no CUDA device" in md
    log = (out / "log.txt").read_text()
    assert all(f"== {c}/{n}: passed (exit code 0)" in log for c, n in planned)
    assert not list(out.glob("*.jsonl"))  # merged into results.json


def test_deadline_guard_kills_the_process_group(tmp_path):
    """A stage past its limit is cut: the driver kills its whole group (a child too) and
    keeps its exit status; nothing of it is left running."""
    pid_file = tmp_path / "child.pid"
    argv = ["bash", "-c", f"sleep 120 & echo $! > {pid_file}; trap '' INT; wait"]
    stage = gpu_check.Stage("sleepy", 2, "test")
    t0 = time.monotonic()
    rec = gpu_check.run_stage("core", stage, 2, argv, dict(os.environ), tmp_path / "log.txt",
                              tmp_path, rehearse=True)
    assert rec["status"] == "cut" and rec["rc"] is not None and rec["rc"] != 0
    assert time.monotonic() - t0 < 2 + 2 * gpu_check.GRACE_S + 5
    child = int(pid_file.read_text())
    for _ in range(50):
        state = Path(f"/proc/{child}/stat")
        if not state.exists() or state.read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the stage's child outlived the cut")
    assert "sleepy: cut" in (tmp_path / "log.txt").read_text()


def test_sigterm_cuts_the_stage_and_the_summary_is_still_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHON"] = sys.executable
    proc = subprocess.Popen(["bash", str(SCRIPT), "--rehearse", "core", "--out", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    log = tmp_path / "log.txt"
    deadline = time.monotonic() + 120
    while "== core/preflight: limit" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, "preflight never started"
        time.sleep(0.2)
    proc.terminate()  # the wrapper exec'd the driver: this is its SIGTERM
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    doc = json.loads((tmp_path / "results.json").read_text())
    status = {s["name"]: (s["status"], s.get("note", "")) for s in doc["stages"]}
    assert status["device"][0] == status["install"][0] == "passed"
    assert status["preflight"][0] == "cut" and "SIGTERM" in status["preflight"][1]
    assert all(status[n][0] == "skipped" for n in ("info", "gpu-tests", "e2e", "profile"))
    assert (tmp_path / "results.md").is_file() and (tmp_path / "results.png").is_file()
    assert "| core | preflight | cut |" in output


def test_failed_install_stops_the_run_and_the_summary_is_still_written(tmp_path,
                                                                       monkeypatch):
    def fake(command, stage, rehearse, out):
        code = 3 if stage == "install" else 0
        return [sys.executable, "-c", f"import sys; print('{stage}'); sys.exit({code})"], {}

    monkeypatch.setattr(gpu_check, "stage_command", fake)
    records: list[dict] = []
    summary = gpu_check.run_command("core", False, tmp_path, tmp_path / "log.txt", records)
    status = {r["name"]: r["status"] for r in records}
    assert status["device"] == "passed" and status["install"] == "failed"
    assert records[1]["rc"] == 3
    assert all(status[s.name] == "skipped" for s in gpu_check.PLAN["core"][2:])
    assert "install failed" in records[-1]["note"] and summary["status"] == "failed"
    text = gpu_check.write_results(tmp_path, "test", records, {"core": summary}, False)
    assert "| core | install | failed | 3 |" in text and "| core | e2e | skipped |" in text
    assert all((tmp_path / f).is_file() for f in ("results.json", "results.md", "results.png"))


def test_summary_names_an_unknown_device(tmp_path):
    assert "unknown" in device_line({}) and "None" not in device_line({})
    (tmp_path / "motion.jsonl").write_text('{"suite": "motion", "speedup": 2.0}\n{"partial')
    text = write_summary(tmp_path, "cmd")
    assert "Device: unknown" in text and "Device: None" not in text
    assert json.loads((tmp_path / "results.json").read_text())["rows"]["motion"] == [
        {"suite": "motion", "speedup": 2.0}]


def test_pytest_outcome_parses_counts_and_failures():
    counts, failures = gpu_check.pytest_outcome(
        "x\nFAILED tests/a.py::t - boom\n"
        "== 3 passed, 1 failed, 2 skipped, 9 deselected in 4.1s ==\n")
    assert counts == {"passed": 3, "failed": 1, "skipped": 2, "deselected": 9}
    assert failures == ["FAILED tests/a.py::t - boom"]
