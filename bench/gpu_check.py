"""The GPU check: one short device run that proves the library on a GPU and cannot waste it.

A GPU is lent rarely, for 15 minutes of device time in all (machine start included), one
command at most 600 s. So the check is two commands, each a fixed list of stages with a hard
wall-clock plan that fits one device command with room to spare:

- core (420 s): device probe, install over the machine's torch, import preflight, `aedfast
  info`, the GPU tests (`pytest -m gpu tests/`: the Triton kernels compiled for real, at test
  and preset sizes, and the end-to-end Detector against CUDA fp32 eager), end-to-end
  throughput (avenue and shanghaitech, batch 256, bf16 compiled + CUDA graphs, against eager
  in the same run, with board power and frames per joule), and one profiled Detector step.
- kernels (240 s): device probe, copy-bandwidth and bf16 matmul ceilings, every autotune
  entry of every kernel against its torch reference, the three kernel families against
  eager PyTorch and torch.compile of their references at the presets' sizes, and video
  decoding (bench/decode_bench.py: OpenCV, torchcodec CPU and NVDEC frames/s, pixels against
  OpenCV, end-to-end file scoring per decoder).

Each stage runs in its own process group under min(its limit, the command's time left - 30 s)
and is killed whole (SIGINT, then SIGKILL) at that limit; its exit status is kept (no pipes).
The summary (results.json, results.md, results.png, log.txt in --out / $OUT) is written
whatever happens: after a failed or cut stage, a failed install (which stops the run), or a
SIGTERM/SIGINT to this driver. It says which stages passed, failed, were cut or skipped, with
exit codes, wall times and limits, the device, driver and versions, the date and the command.

--rehearse [core|kernels|all] runs the same stages on this CPU at tiny sizes: Triton under
TRITON_INTERPRET=1 on CPU tensors, pip with --dry-run, and what needs CUDA (power, CUDA
graphs, CUDA-only tests, nvidia-smi) reported as skipped with the reason; its limits and
budgets are doubled (a shared 2-core CPU imports torch slowly). tests/test_gpu_check.py
runs it, so the device script cannot rot unnoticed.

Usage (repository root): bash bench/gpu_check.sh core | kernels | --plan | --rehearse [WHICH]
(python3 -m bench.gpu_check takes the same arguments). Only the standard library is needed
here; the stages use what the machine has.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESERVE_S = 30  # kept back from every command for the summary and a killed stage's grace
GRACE_S = 5  # SIGINT -> SIGKILL
MIN_STAGE_S = 5  # a stage with less time than this left is skipped, not started
REHEARSAL_SCALE = 2  # the rehearsal's limits and budgets: a shared 2-core CPU imports slowly
DEVICE_COMMAND_LIMIT_S = 600
BUDGETS = {"core": 420, "kernels": 240}
PYTEST = ["-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-v", "-rfEs"]


@dataclass(frozen=True)
class Stage:
    name: str
    limit: int  # seconds
    what: str  # what passing it proves
    rehearsal_skips: tuple[str, ...] = field(default=())  # parts a CPU rehearsal cannot run
    rows: str = ""  # the bench suite whose rows a passing stage must have recorded


REHEARSAL_KERNEL_SKIPS = (
    "timings: one call of each path under the interpreter (the numbers mean nothing)",
    "torch.compile(reference): traced with dynamo's eager backend, no inductor code",
)
PLAN: dict[str, list[Stage]] = {
    "core": [
        Stage("device", 15, "the device, driver and versions are recorded (nvidia-smi, torch)",
              ("nvidia-smi: no NVIDIA driver on a CPU machine",)),
        Stage("install", 25, "aedfast installs over the machine's torch: pip install --no-deps "
              "--no-build-isolation -e . (a failure stops the run)",
              ("the install itself: pip runs with --dry-run (the environment is left as is)",)),
        Stage("preflight", 25, "every module of aedfast, aedfast.kernels and bench/ imports"),
        Stage("info", 15, "the installed CLI runs: aedfast info (versions, device, backend)"),
        Stage("gpu-tests", 155, "pytest -m gpu tests/ with AEDFAST_TEST_GPU=1: every Triton "
              "kernel compiled for real against its references, at test and preset sizes; the "
              "end-to-end Detector (triton, compile, CUDA graphs) against CUDA fp32 eager",
              ("CUDA-only tests (preset sizes, end-to-end Detector with CUDA graphs): skipped by "
               "tests/conftest.py without CUDA; interpreted kernel tests: the first case of "
               "each (the whole set runs in the CPU suite)",)),
        Stage("e2e", 110, "end-to-end frames/s, avenue and shanghaitech at batch 256, bf16 "
              "compiled + CUDA graphs vs eager fp32 in the same run; scores within 2e-2 of "
              "eager; board power sampled by nvidia-ml-py, frames per joule",
              ("CUDA graphs and bf16: the CPU path runs float32 without graphs",
               "torch.compile of the Detector: inductor's CPU compile takes about a minute on 2 "
               "cores (the CPU test suite covers the compiled path)",
               "GPU power and frames per joule: no CUDA device (rows say power unavailable)"),
              rows="e2e"),
        Stage("profile", 45, "one profiled Detector step (avenue, batch 256): top kernels by "
              "GPU time, device busy fraction",
              ("GPU kernel times: the CPU profile lists CPU operators, uncompiled",),
              rows="profile"),
    ],
    "kernels": [
        Stage("device", 10, "the device, driver and versions are recorded (nvidia-smi, torch)",
              ("nvidia-smi: no NVIDIA driver on a CPU machine",)),
        Stage("ceilings", 15, "copy bandwidth and bf16 matmul rate: the ceilings the kernel "
              "rows are fractions of", ("bf16 matmul: the CPU measures float32",),
              rows="ceilings"),
        Stage("autotune", 60, "every autotune entry of every Triton kernel, run alone, equals "
              "the kernel's torch reference at the presets' sizes",
              ("preset sizes: the interpreter runs every entry at the tiny preset's",),
              rows="autotune"),
        Stage("motion", 25, "motion kernel vs eager and torch.compile(reference), avenue and "
              "shanghaitech at batch 256, fraction of copy bandwidth",
              REHEARSAL_KERNEL_SKIPS, rows="motion"),
        Stage("cvt", 45, "fused CvT blocks (D 256 / 128, T 401 / 801, batch 256, bf16) vs "
              "eager, the torch backend and torch.compile(reference); TFLOP/s, bandwidth",
              REHEARSAL_KERNEL_SKIPS, rows="cvt"),
        Stage("smoothing", 25, "3D filter + frame max + temporal Gaussian on 20x40 token and "
              "320x640 pixel maps vs eager and torch.compile(reference), bandwidth fraction",
              REHEARSAL_KERNEL_SKIPS, rows="smoothing"),
        Stage("decode", 30, "video decoding at 640x360 and 856x480 (300-frame H.264 clips): "
              "OpenCV 1 thread / all cores / one process per core, torchcodec CPU and NVDEC "
              "frames/s, NVDEC pixels against OpenCV, score_video per decoder (tiny preset); "
              "measurements not started within 18 s are reported as skipped (docs/design.md §12)",
              ("NVDEC: no CUDA device (its rows say unavailable)",
               "sizes: one 136x72 clip of 16 frames, one round"),
              rows="decode"),
    ],
}


def plan_text() -> str:
    lines = ["GPU check plan: each command is one device command (at most "
             f"{DEVICE_COMMAND_LIMIT_S} s); a stage runs under min(its limit, the command's "
             f"time left - {RESERVE_S} s)."]
    total = 0
    for command, stages in PLAN.items():
        s = sum(st.limit for st in stages)
        lines += ["", f"{command} (budget {BUDGETS[command]} s)",
                  f"  {'stage':10s} {'limit':>6s}  what it proves"]
        lines += [f"  {st.name:10s} {st.limit:>4d} s  {st.what}" for st in stages]
        lines.append(f"  {command}: stages {s} s + reserve {RESERVE_S} s = {s + RESERVE_S} s "
                     f"<= {BUDGETS[command]} s")
        total += s + RESERVE_S
    lines += ["", f"both commands: {total} s of the 900 s lease (machine start, 1-2 min, "
              "not included)"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- stage commands


def stage_command(command: str, stage: str, rehearse: bool, out: Path
                  ) -> tuple[list[str], dict[str, str]]:
    """(argv, environment additions) of one stage, on the GPU or in the rehearsal."""
    py = sys.executable
    env: dict[str, str] = {}
    if stage == "device":
        return [py, "-m", "bench.gpu_check", "--probe", str(out / "device.json")], env
    if stage == "install":
        argv = [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                "--disable-pip-version-check", "--no-index", "-e", "."]
        return argv + (["--dry-run"] if rehearse else []), env
    if stage == "preflight":
        return [py, "-m", "bench.preflight"], env
    if stage == "info":
        return [py, "-m", "aedfast", "info"], env
    if stage == "gpu-tests":
        if rehearse:
            env["AEDFAST_TEST_REHEARSE"] = "1"
        else:
            env["AEDFAST_TEST_GPU"] = "1"
        return [py, *PYTEST, "--durations=15", "-m", "gpu", "tests/"], env
    if stage == "profile":
        size = ["tiny", "8", "8", "--no-compile"] if rehearse else ["avenue", "256", "256"]
        return [py, "-m", "bench.profile_e2e", "--preset", size[0], "--batch", size[1],
                "--frames", size[2], *size[3:]], env
    if stage == "ceilings":
        return [py, "-m", "bench.ceilings"], env
    if stage == "decode":
        size = (["--sizes", "136x72", "--frames", "16", "--unique", "8", "--rounds", "1"]
                if rehearse else ["--frames", "300", "--unique", "30", "--rounds", "2",
                                  "--budget", "18"])
        return [py, "-m", "bench.decode_bench", "--out", str(out / "decode"), *size], env
    if stage == "autotune":
        return [py, "-m", "bench.autotune_check"], env
    bench = [py, *PYTEST, "-s", "--benchmark-disable"]
    if stage == "e2e":
        env.update(AEDFAST_BENCH_PRESETS="tiny" if rehearse else "avenue,shanghaitech",
                   AEDFAST_BENCH_BATCHES="8" if rehearse else "256")
        return bench + ["bench/test_bench_e2e.py::test_bench_e2e"], env
    if stage == "motion":
        env.update(AEDFAST_BENCH_PRESETS="tiny" if rehearse else "avenue,shanghaitech",
                   AEDFAST_BENCH_BATCHES="1" if rehearse else "256")
        return bench + ["bench/test_bench_motion.py"], env
    if stage == "cvt":
        env.update(AEDFAST_BENCH_PRESETS="tiny" if rehearse else "avenue",
                   AEDFAST_BENCH_BATCHES="1" if rehearse else "256", AEDFAST_BENCH_DTYPES="bf16")
        return bench + ["bench/test_bench_cvt.py::test_bench_cvt_block",
                        "bench/test_bench_cvt.py::test_bench_cvt_block_compiled"], env
    if stage == "smoothing":
        env.update(AEDFAST_BENCH_PRESETS="tiny" if rehearse else "avenue")
        if not rehearse:
            env["AEDFAST_BENCH_VIDEOS"] = "4"
        return bench + ["bench/test_bench_smoothing.py::test_bench_smoothing",
                        "bench/test_bench_smoothing.py::test_bench_smoothing_compiled"], env
    raise ValueError(f"unknown stage {stage!r}")


def base_env(rehearse: bool, out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AEDFAST_BENCH_", "AEDFAST_TEST_")) and k != "TRITON_INTERPRET"}
    env.update(PYTHONUNBUFFERED="1", AEDFAST_BENCH_OUT=str(out))
    if rehearse:  # the CPU path, even on a machine with a GPU; one thread: a shared CPU's
        # OpenMP threads wait on each other for a large share of the time
        env.update(TRITON_INTERPRET="1", AEDFAST_BENCH_REHEARSE="1", CUDA_VISIBLE_DEVICES="",
                   OMP_NUM_THREADS="1")
    return env


# ----------------------------------------------------------------------------- running


class Interrupted(Exception):
    """SIGTERM or SIGINT to the driver: kill the stage, write the summary, stop."""


def _on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGINT to the stage's process group (pytest then prints what it has), SIGKILL to
    whatever of the group is left after GRACE_S."""
    for sig, wait in ((signal.SIGINT, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGINT:  # the leader is gone; make sure its children are too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


TEST_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def pytest_outcome(text: str) -> tuple[dict[str, int], list[str]]:
    """Counts from pytest's last summary line, and its FAILED/ERROR lines (-rfE)."""
    counts: dict[str, int] = {}
    for line in reversed(text.splitlines()):
        if TEST_COUNT.search(line) and re.search(r"\bin [\d.]+s\b", line):
            counts = {k.rstrip("s") if k.startswith("error") else k: int(n)
                      for n, k in TEST_COUNT.findall(line)}
            break
    failures = [ln.strip() for ln in text.splitlines()
                if ln.startswith(("FAILED ", "ERROR "))]
    return counts, failures[:20]


def suite_rows(out: Path, suite: str) -> int:
    f = out / f"{suite}.jsonl"
    return len(f.read_text().splitlines()) if f.is_file() else 0


def run_stage(command: str, stage: Stage, limit: float, argv: list[str], env: dict,
              log_path: Path, out: Path, rehearse: bool) -> dict:
    """Run one stage in its own process group with its output appended to log.txt; return
    its record (status passed / failed / cut, exit code, wall time, test counts)."""
    rows_before = suite_rows(out, stage.rows) if stage.rows else 0
    with log_path.open("a") as log:
        log.write(f"\n== {command}/{stage.name}: limit {limit:.0f} s, started "
                  f"{time.strftime('%H:%M:%SZ', time.gmtime())}\n$ {' '.join(argv)}\n")
    start_offset = log_path.stat().st_size
    print(f"== {command}/{stage.name} (limit {limit:.0f} s): {' '.join(argv[1:])}", flush=True)
    t0 = time.monotonic()
    rec = {"command": command, "name": stage.name, "limit_s": round(limit),
           "planned_limit_s": stage.limit, "argv": argv, "what": stage.what}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
            rec["status"] = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = proc.returncode
            rec.update(status="cut", note=f"killed at its limit of {limit:.0f} s")
        except Interrupted as e:
            kill_group(proc)
            rc = proc.returncode
            rec.update(status="cut", interrupted=True, note=f"killed: the driver got {e}")
    rec.update(rc=rc, wall_s=round(time.monotonic() - t0, 1))
    with log_path.open("rb") as f:
        f.seek(start_offset)
        text = f.read().decode(errors="replace")
    if "-m" in argv and "pytest" in argv:
        rec["tests"], failures = pytest_outcome(text)
        if failures:
            rec["failures"] = failures
        if rec["status"] == "failed" and rc == 5:
            rec["note"] = "pytest collected no tests"
    if stage.rows and rec["status"] == "passed" and suite_rows(out, stage.rows) <= rows_before:
        rec.update(status="failed", note=f"no '{stage.rows}' result rows were recorded")
    if rehearse and stage.rehearsal_skips:
        rec["skipped_parts"] = list(stage.rehearsal_skips)
    with log_path.open("a") as log:
        log.write(f"== {command}/{stage.name}: {rec['status']} (exit code {rc}) in "
                  f"{rec['wall_s']:.1f} s\n")
    tests = ", ".join(f"{v} {k}" for k, v in rec.get("tests", {}).items())
    print(f"   {rec['status']} (exit code {rc}) in {rec['wall_s']:.1f} s"
          + (f"; {tests}" if tests else "") + (f"; {rec['note']}" if rec.get("note") else ""),
          flush=True)
    if rec["status"] != "passed":
        tail = [ln[:200] for ln in text.splitlines()[-25:]]  # the run tool keeps 12,000 chars
        print("   | " + "\n   | ".join(tail), flush=True)
    return rec


def run_command(command: str, rehearse: bool, out: Path, log_path: Path,
                records: list[dict]) -> dict:
    """Every stage of `command` under the deadline guard, each stage's record appended to
    `records` as it ends (so an interrupted run keeps them); returns the command's summary."""
    scale = REHEARSAL_SCALE if rehearse else 1
    budget = BUDGETS[command] * scale
    t0 = time.monotonic()
    first = len(records)
    env0 = base_env(rehearse, out)
    stop_reason = ""
    for stage in PLAN[command]:
        left = budget - (time.monotonic() - t0) - RESERVE_S
        limit = min(stage.limit * scale, left)
        base = {"command": command, "name": stage.name, "rc": None, "wall_s": 0.0,
                "limit_s": stage.limit * scale, "planned_limit_s": stage.limit,
                "what": stage.what}
        if stop_reason or limit < MIN_STAGE_S:
            records.append({**base, "status": "skipped",
                            "note": stop_reason or f"no time left ({max(left, 0):.0f} s) in "
                                                   f"the {budget} s budget"})
            print(f"== {command}/{stage.name}: skipped ({records[-1]['note']})", flush=True)
            continue
        argv, env = stage_command(command, stage.name, rehearse, out)
        records.append(run_stage(command, stage, limit, argv, {**env0, **env}, log_path, out,
                                 rehearse))
        if records[-1].pop("interrupted", False):
            stop_reason = "not run: the driver was interrupted"
        elif stage.name == "install" and records[-1]["status"] != "passed":
            stop_reason = "not run: the install failed (see log.txt)"
            print("!! INSTALL FAILED: aedfast did not install over the machine's torch; the "
                  "remaining stages are skipped. The summary follows.", flush=True)
    wall = time.monotonic() - t0
    ok = all(r["status"] == "passed" for r in records[first:])
    return {"budget_s": budget, "wall_s": round(wall, 1), "status": "passed" if ok else "failed"}


# ----------------------------------------------------------------------------- device probe


def probe(path: Path) -> int:
    """Write what the run is on to `path`: device, driver, CUDA, torch, triton, Python, date."""
    info: dict = {"python": platform.python_version(), "executable": sys.executable,
                  "host": platform.node(),
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                              "clocks.max.sm,power.limit,temperature.gpu",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        first = smi.stdout.strip().splitlines()[0].split(", ") if smi.returncode == 0 else []
        if len(first) >= 2:
            info["name"], info["driver"] = first[0], first[1]
    except (OSError, subprocess.TimeoutExpired) as e:
        info["nvidia_smi"] = f"unavailable: {type(e).__name__}: {e}"
    try:
        import torch

        info.update(torch=torch.__version__, cuda=torch.version.cuda,
                    cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            info["name"] = torch.cuda.get_device_name(0)
            info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            info["memory_GiB"] = round(torch.cuda.get_device_properties(0).total_memory
                                       / 2**30, 1)
        else:
            info.setdefault("name", f"CPU {platform.machine()} ({os.cpu_count()} cores)")
    except Exception as e:
        info["torch"] = f"does not import: {type(e).__name__}: {e}"
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception as e:
        info["triton"] = f"does not import: {type(e).__name__}"
    path.write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
    return 0 if isinstance(info.get("torch"), str) and "does not" not in info["torch"] else 1


# ----------------------------------------------------------------------------- summary


def write_results(out: Path, command_line: str, records: list, commands: dict,
                  rehearse: bool) -> str:
    """results.{json,md,png} through bench.summarize; if even that fails, minimal files
    written here, so a summary always exists."""
    probed = None
    if (out / "device.json").is_file():
        try:
            probed = json.loads((out / "device.json").read_text())
        except ValueError:
            probed = None
    title = ("CPU rehearsal of the GPU check" if rehearse else "GPU check") + (
        f" ({', '.join(commands)})")
    extra = {"rehearsal": rehearse, "commands": commands, "argv": sys.argv[1:],
             "python": platform.python_version(),
             "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        from bench.summarize import write_summary

        return write_summary(out, command_line, records, probed, title, extra)
    except Exception as e:  # the last resort: stdlib only
        from bench.summarize import png_strip

        doc = {"title": title, "command": command_line, "device": probed or {},
               "stages": records, **extra, "summary_error": f"{type(e).__name__}: {e}"}
        (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))
        text = (f"# {title}\n\nCommand: `{command_line}`\n\nSummary error: {e}\n\n"
                + "\n".join(f"- {r['command']} {r['name']}: {r['status']} (exit code "
                            f"{r.get('rc')}, {r.get('wall_s')} s)" for r in records) + "\n")
        (out / "results.md").write_text(text)
        png_strip(records, out / "results.png")
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bash bench/gpu_check.sh",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", choices=["core", "kernels", "all"],
                    help="core or kernels on the GPU; with --rehearse also all (the default)")
    ap.add_argument("--rehearse", action="store_true",
                    help="the CPU rehearsal: same stages and files at tiny sizes")
    ap.add_argument("--plan", action="store_true", help="print the stages, limits and sums")
    ap.add_argument("--out", default=os.environ.get("OUT") or "/tmp/aedfast-gpu-check",
                    help="results folder (default $OUT, else /tmp/aedfast-gpu-check)")
    ap.add_argument("--probe", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        return probe(Path(args.probe))
    if args.plan:
        print(plan_text())
        return 0
    if args.rehearse:
        commands = ["core", "kernels"] if args.command in (None, "all") else [args.command]
    elif args.command in ("core", "kernels"):
        commands = [args.command]
    else:
        ap.error("name one command, core or kernels (each is one device command; both "
                 f"together exceed the {DEVICE_COMMAND_LIMIT_S} s limit), or use --plan or "
                 "--rehearse")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.txt"
    command_line = os.environ.get("AEDFAST_GPU_CHECK_CMD") or "python3 -m bench.gpu_check " + \
        " ".join(sys.argv[1:] if argv is None else argv)
    with log_path.open("a") as log:
        log.write(f"# {command_line}  ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
                  f"{platform.node()}, Python {platform.python_version()})\n")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    records: list[dict] = []
    summaries: dict[str, dict] = {}
    try:
        for command in commands:
            summaries[command] = run_command(command, args.rehearse, out, log_path, records)
    except Interrupted as e:
        print(f"!! interrupted ({e}): writing the summary", flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        done = {(r["command"], r["name"]) for r in records}
        records += [{"command": c, "name": st.name, "status": "skipped", "rc": None,
                     "wall_s": 0.0, "limit_s": st.limit, "planned_limit_s": st.limit,
                     "what": st.what, "note": "not run: the driver was interrupted"}
                    for c in commands for st in PLAN[c] if (c, st.name) not in done]
        text = write_results(out, command_line, records, summaries, args.rehearse)
    head = text.split("## Results")[0]
    print("\n" + head + f"Full results: {out}/results.md, results.json, results.png, log.txt")
    ok = records and all(r["status"] == "passed" for r in records)
    return 0 if ok and len(summaries) == len(commands) else 1


if __name__ == "__main__":
    sys.exit(main())
