"""mofang run vs papermill, measured side by side (driven by bench/notebooks.sh).

usage: notebooks.py MOFANG_BINARY

Both tools run the same notebooks on the same kernel (the project venv's ipykernel `python3`
kernelspec: VIRTUAL_ENV and PATH point at .venv for both). Every run is a cold start: a new
process, a new kernel. Scenarios:

  single run, 3 cells and 50 cells   median of BENCH_NB_REPEATS [5] runs each, mofang and
                                     papermill alternating
  sweep of BENCH_NB_SWEEP [20] runs  `mofang run --grid -j 2`, papermill in a shell loop,
                                     papermill under `xargs -P 2`; BENCH_NB_SWEEP_REPEATS [1] each

Prints a Markdown report (times, ratios mofang / papermill, the issue's targets, machine load).
"""

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run with the project venv's python (bench/notebooks.sh does): its prefix is the venv.
VENV = Path(sys.prefix)


def env_int(name, default):
    return int(os.environ.get(name, default))


REPEATS = env_int("BENCH_NB_REPEATS", 5)
SWEEP = env_int("BENCH_NB_SWEEP", 20)
SWEEP_REPEATS = env_int("BENCH_NB_SWEEP_REPEATS", 1)


def notebook(n_cells):
    """A parameters cell, then n_cells - 1 small code cells (each prints)."""
    cells = [
        {
            "id": "params",
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "source": "x = 1",
            "outputs": [],
        }
    ]
    for i in range(1, n_cells):
        cells.append(
            {
                "id": f"c{i}",
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "source": f"v{i} = x * {i}\nprint('cell {i}', v{i})",
                "outputs": [],
            }
        )
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def tool_env():
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"
    env.pop("RUST_LOG", None)
    return env


def timed(cmd, cwd, shell=False):
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(), shell=shell, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
        sys.exit(f"bench: `{shown}` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def cpu_busy_fraction(seconds=1.0):
    """Share of all CPUs busy over `seconds` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return idle, sum(fields)
    i0, t0 = sample()
    time.sleep(seconds)
    i1, t1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    mofang = str(Path(sys.argv[1]).resolve())
    papermill = str(VENV / "bin" / "papermill")
    work = Path(tempfile.mkdtemp(prefix="mofang-bench-nb-"))
    for n in (3, 50):
        (work / f"nb{n}.ipynb").write_text(json.dumps(notebook(n)))
    (work / "grid.yaml").write_text(f"x: {json.dumps(list(range(SWEEP)))}\n")

    load_before = os.getloadavg()
    busy_before = cpu_busy_fraction()
    began = time.time()

    def mofang_single(n, i):
        return timed([mofang, "run", f"nb{n}.ipynb", f"m{n}-{i}.ipynb", "-p", "x", str(i), "--no-progress-bar"], work)

    def papermill_single(n, i):
        return timed([papermill, f"nb{n}.ipynb", f"p{n}-{i}.ipynb", "-p", "x", str(i), "--no-progress-bar"], work)

    single = {}
    for n in (3, 50):
        # One untimed run each warms the page cache (binaries, Python modules).
        mofang_single(n, 99)
        papermill_single(n, 99)
        ours, theirs = [], []
        for i in range(REPEATS):
            ours.append(mofang_single(n, i))
            theirs.append(papermill_single(n, i))
        single[n] = (ours, theirs)
        print(f"bench: {n} cells: mofang {[round(t, 2) for t in ours]}, papermill {[round(t, 2) for t in theirs]}", file=sys.stderr)

    sweeps = {"mofang": [], "loop": [], "xargs": []}
    for r in range(SWEEP_REPEATS):
        sweeps["mofang"].append(timed([mofang, "run", "nb3.ipynb", "--grid", "grid.yaml", "-j", "2", f"sweep-m{r}", "--no-progress-bar"], work))
        loop = f"for x in $(seq 0 {SWEEP - 1}); do {shlex.quote(papermill)} nb3.ipynb sweep-l{r}-$x.ipynb -p x $x --no-progress-bar 2>/dev/null || exit 1; done"
        sweeps["loop"].append(timed(loop, work, shell=True))
        xargs = f"seq 0 {SWEEP - 1} | xargs -P 2 -I{{}} {shlex.quote(papermill)} nb3.ipynb sweep-x{r}-{{}}.ipynb -p x {{}} --no-progress-bar 2>/dev/null"
        sweeps["xargs"].append(timed(xargs, work, shell=True))
        print(f"bench: sweep {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in sweeps.items()), file=sys.stderr)
    # The sweep's outputs must be real runs.
    summary = json.loads((work / "sweep-m0" / "summary.json").read_text())
    assert summary["completed"] == SWEEP, summary

    took = time.time() - began
    load_after = os.getloadavg()
    busy_after = cpu_busy_fraction()

    med = statistics.median
    lines = []
    lines.append(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; commit {git('rev-parse', '--short', 'HEAD')}{' (+ uncommitted changes)' if git('status', '--porcelain', '--untracked-files=no') else ''}")
    lines.append("- command: `bench/notebooks.sh`" + "".join(f" `{k}={v}`" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_NB_")))
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    # `papermill --version` prints "2.7.0 from <path> (<python>)": keep the version only.
    pm_out = subprocess.run([papermill, "--version"], capture_output=True, text=True, env=tool_env()).stdout.split()
    pm_version = f"papermill {pm_out[0] if pm_out else '?'}"
    lines.append(f"- machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; Python {platform.python_version()}, {pm_version}")
    lines.append(
        f"- load average before / after: {' '.join(f'{v:.2f}' for v in load_before)} / {' '.join(f'{v:.2f}' for v in load_after)}; "
        f"CPU busy in the second before / after: {busy_before:.0%} / {busy_after:.0%}; the benchmark took {took / 60:.1f} min"
    )
    lines.append("")
    lines.append("| scenario | mofang | papermill | mofang / papermill | target |")
    lines.append("|---|---|---|---|---|")
    for n in (3, 50):
        ours, theirs = single[n]
        ratio = med(ours) / med(theirs)
        verdict = "met" if ratio <= 0.5 else "**not met**"
        lines.append(f"| single cold run, {n} cells (median of {REPEATS}) | {med(ours):.2f} s | {med(theirs):.2f} s | {ratio:.2f} | ≤ 0.5 ({verdict}) |")
    m = med(sweeps["mofang"])
    for key, label in (("loop", "papermill in a shell loop"), ("xargs", "papermill under `xargs -P 2`")):
        t = med(sweeps[key])
        target = ""
        if key == "loop":
            target = f"≥ 4× faster ({'met' if t / m >= 4 else '**not met**'})"
        lines.append(f"| {SWEEP}-run sweep, 3 cells: `mofang run --grid -j 2` vs {label} | {m:.2f} s | {t:.2f} s | {m / t:.2f} ({t / m:.1f}× faster) | {target} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
