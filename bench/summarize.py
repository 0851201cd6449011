"""Merge the suites' JSON-lines rows in a results folder into results.json, results.md and
results.png (speed-up over eager per case). Usage: python -m bench.summarize DIR [CMD]

Rows already in DIR/results.json are kept unless a new JSON-lines file of the same suite
replaces them (so a suite can be re-run into a summarised folder). bench/gpu_check.py writes
its summary with `write_summary`, adding its stages (status, exit code, wall time, limit) and
the device it probed. Only the standard library is needed (matplotlib for the plot, aedfast's
table writer when aedfast imports), so a summary is written even when the library is broken.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

STATUS_COLOURS = {"passed": "tab:green", "failed": "tab:red", "cut": "tab:orange",
                  "skipped": "tab:gray"}
CASE_KEYS = ("mode", "case", "part", "shape", "preset", "batch", "dtype", "precision",
             "compile", "source", "streams")


def load_rows(out: Path) -> dict[str, list[dict]]:
    """{suite: [row, ...]} from the JSON-lines files in `out` (unreadable lines skipped: a
    stage killed mid-write leaves at most a partial last line)."""
    rows: dict[str, list[dict]] = {}
    for f in sorted(out.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                rows.setdefault(f.stem, []).append(json.loads(line))
            except ValueError:
                continue
    return rows


def tables(rows: dict[str, list[dict]]) -> str:
    """aedfast's markdown tables of the rows; JSON when aedfast does not import."""
    try:
        from aedfast.benchmark import markdown_tables

        return markdown_tables(rows)
    except Exception as e:
        return (f"(aedfast does not import, {type(e).__name__}: {e}; rows as JSON)\n\n```json\n"
                + json.dumps(rows, indent=1) + "\n```\n")


def device_meta(rows: dict[str, list[dict]], probed: dict | None = None) -> dict:
    """What the numbers ran on: the probed device, else the ceilings row, else any row that
    records a device (bench.common.device_info); {} when none does."""
    if probed:
        return probed
    for r in rows.get("ceilings", []) + [r for rs in rows.values() for r in rs]:
        if r.get("name") and r.get("torch"):
            return {k: r.get(k) for k in ("name", "driver", "cuda", "torch", "triton", "python",
                                          "date") if r.get(k) is not None}
    return {}


def device_line(meta: dict) -> str:
    if not meta.get("name"):
        return ("Device: unknown (no device information was recorded: no ceilings row and no "
                "probe; the device was absent or its stage did not run)")
    parts = [f"Device: {meta['name']}"]
    if meta.get("driver"):
        parts.append(f"(driver {meta['driver']}" + (f", CUDA {meta['cuda']})" if meta.get("cuda")
                                                    else ")"))
    versions = ", ".join(f"{k} {meta[k]}" for k in ("torch", "triton", "python") if meta.get(k))
    return " ".join(parts) + (f"; {versions}" if versions else "") + (
        f"; {meta['date']}" if meta.get("date") else "")


def _case(r: dict) -> str:
    return ", ".join(f"{k}={r[k]}" for k in CASE_KEYS if r.get(k) not in (None, ""))


def _speedups(rows: dict[str, list[dict]]) -> tuple[list[str], list[float]]:
    labels, values = [], []
    for suite, rs in rows.items():
        for r in rs:
            key = next((k for k in ("speedup", "triton_speedup", "torch_speedup",
                                    "speedup_vs_compiled") if k in r), None)
            s = r.get(key) if key else None
            if isinstance(s, (int, float)) and s > 0:
                vs = " vs compiled" if key == "speedup_vs_compiled" else ""
                labels.append(f"{suite}: {_case(r)}{vs}"[:90])
                values.append(float(s))
    return labels, values


def png_strip(stages: list[dict], path: Path) -> None:
    """A stdlib PNG (no matplotlib): one coloured band per stage (green passed, red failed,
    orange cut, grey skipped), so results.png exists whatever is installed."""
    rgb = {"passed": (44, 160, 44), "failed": (214, 39, 40), "cut": (255, 127, 14)}
    bands = [rgb.get(s.get("status"), (127, 127, 127)) for s in stages] or [(127, 127, 127)]
    w, h = 40 * len(bands), 40
    raw = b"".join(b"\x00" + b"".join(bytes(bands[x // 40]) for x in range(w)) for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2,
                                                                        0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def summary_plot(rows: dict[str, list[dict]], path: Path, stages: list[dict] | None = None
                 ) -> None:
    """Speed-up over eager per case (log scale) and, with stages, each stage's wall time
    against its limit, coloured by status."""
    labels, values = _speedups(rows)
    stages = stages or []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        png_strip(stages, path)
        return
    panels = [p for p, n in (("stages", len(stages)), ("speedups", len(values))) if n]
    if not panels:
        png_strip(stages, path)
        return
    heights = [0.3 * (len(stages) if p == "stages" else len(values)) + 1.2 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "stages":
            names = [f"{s.get('command', '')} {s['name']}".strip() for s in stages]
            ax.barh(range(len(stages)), [s.get("limit_s") or 0 for s in stages],
                    color="none", edgecolor="k", lw=0.6, label="limit")
            ax.barh(range(len(stages)), [s.get("wall_s") or 0 for s in stages],
                    color=[STATUS_COLOURS.get(s.get("status"), "tab:gray") for s in stages])
            ax.set_yticks(range(len(stages)), [f"{n} ({s.get('status')})" for n, s in
                                              zip(names, stages)], fontsize=7)
            ax.set_xlabel("stage wall time, s (outline: its limit)")
        else:
            ax.barh(range(len(values)), values, color="tab:blue")
            ax.set_yticks(range(len(values)), labels, fontsize=7)
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("speed-up, same run: over eager ('vs compiled': over torch.compile)")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def speedup_plot(rows: dict[str, list[dict]], path: Path) -> None:
    summary_plot(rows, path)


def stage_table(stages: list[dict]) -> str:
    lines = ["| command | stage | status | exit code | wall s | limit s | tests | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for s in stages:
        tests = ", ".join(f"{v} {k}" for k, v in (s.get("tests") or {}).items())
        wall = f"{s['wall_s']:.1f}" if isinstance(s.get("wall_s"), (int, float)) else ""
        lines.append(f"| {s.get('command', '')} | {s['name']} | {s['status']} | "
                     f"{'' if s.get('rc') is None else s['rc']} | {wall} | "
                     f"{s.get('limit_s', '')} | {tests} | {s.get('note', '')} |")
    return "\n".join(lines) + "\n"


def headline(rows: dict[str, list[dict]]) -> str:
    """The few numbers worth reading first (end to end, kernels against eager and compiled,
    autotune entries checked), one line each."""
    out = []
    for r in rows.get("e2e", []):
        if r.get("mode") != "offline":
            continue
        power = r.get("sustained_frames_per_joule", r.get("frames_per_joule"))
        out.append(f"e2e {r.get('preset')} batch {r.get('batch')} {r.get('precision')} "
                   f"{r.get('source')}: {r.get('fps')} frames/s vs eager {r.get('eager_fps')} "
                   f"(x{r.get('speedup')}), score rel err {r.get('score_rel_err', 0):.2g}"
                   + (f", {power} frames/J" if power is not None else
                      f", power {r.get('power', 'n/a')}"))
    for suite in ("motion", "cvt", "smoothing"):
        for r in rows.get(suite, []):
            bits = [f"{k} {r[k]:.3g}" for k in ("speedup", "triton_speedup", "speedup_vs_compiled",
                                                  "bw_fraction", "copy_fraction")
                    if isinstance(r.get(k), (int, float))]
            if bits:
                out.append(f"{suite} {_case(r)}: " + ", ".join(bits))
    for r in rows.get("profile", []):
        top = ", ".join(f"{t['name'][:40]} {t['us']:.0f} us" for t in r.get("top", [])[:3])
        out.append(f"profile {r.get('preset')} batch {r.get('batch')}: {r.get('fps')} frames/s, "
                   f"device busy {r.get('device_busy_fraction')}; top: {top}")
    auto = rows.get("autotune", [])
    if auto:
        counts: dict[str, int] = {}
        for r in auto:
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        out.append("autotune entries x cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(out)


def profile_tables(rows: dict[str, list[dict]]) -> str:
    parts = []
    for r in rows.get("profile", []):
        parts.append(f"### Profile: {r.get('preset')} batch {r.get('batch')}, top kernels by "
                     f"{'GPU' if r.get('device', '').startswith('cuda') else 'CPU'} time\n")
        parts.append("| us | calls | kernel |\n|---|---|---|")
        parts += [f"| {t['us']:,.0f} | {t['calls']} | `{t['name']}` |" for t in r.get("top", [])]
        parts.append("")
    return "\n".join(parts)


def write_summary(out: Path, command: str, stages: list[dict] | None = None,
                  probed: dict | None = None, title: str = "Benchmark results",
                  extra: dict | None = None) -> str:
    """Merge the JSON-lines rows in `out` with an earlier results.json (new suites replace
    old ones; stages of other commands are kept), write results.{json,md,png}, delete the
    merged JSON-lines files, and return the markdown."""
    previous = {}
    if (out / "results.json").is_file():
        try:
            previous = json.loads((out / "results.json").read_text())
        except ValueError:
            previous = {}
    rows = previous.get("rows", {})
    rows.update(load_rows(out))
    if stages is not None:
        mine = {s.get("command") for s in stages}
        stages = [s for s in previous.get("stages", []) if s.get("command") not in mine] + stages
    meta = device_meta(rows, probed or previous.get("device"))
    doc = {"title": title, "command": command, "device": meta, "stages": stages or [],
           **(extra or {}), "rows": rows}
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    md = [f"# {title}\n", f"Command: `{command}`\n", device_line(meta) + "\n"]
    if extra and extra.get("commands"):
        md.append("Budgets: " + "; ".join(
            f"{name} {c.get('wall_s', 0):.0f} s of {c.get('budget_s')} s ({c.get('status')})"
            for name, c in extra["commands"].items()) + "\n")
    if stages:
        md += ["## Stages\n", stage_table(stages)]
        failing = [f"- {s.get('command', '')} {s['name']}: " + "; ".join(s["failures"])
                   for s in stages if s.get("failures")]
        if failing:
            md += ["### Failures\n", "\n".join(failing) + "\n"]
        skips = [f"- {s.get('command', '')} {s['name']}: {k}" for s in stages
                 for k in s.get("skipped_parts", [])]
        if skips:
            md += ["### Skipped parts\n", "\n".join(skips) + "\n"]
    head = headline(rows)
    if head:
        md += ["## Headline\n", "```\n" + head + "\n```\n"]
    md += ["## Results\n", tables(rows), profile_tables(rows)]
    text = "\n".join(md)
    (out / "results.md").write_text(text)
    summary_plot(rows, out / "results.png", stages)
    for f in out.glob("*.jsonl"):
        f.unlink()
    return text


def main(folder: str, command: str = "") -> None:
    print(write_summary(Path(folder), command))


if __name__ == "__main__":
    main(sys.argv[1], " ".join(sys.argv[2:]))
