"""`make gpu-check`: everything CUDA-specific this project has, in one command and one Markdown report.

On a CUDA device it runs, each step in its own process with its own timeout:

* every parity fixture on the device (`VOS_TEST_DEVICE=cuda pytest tests/parity/...`: the adapters move the
  models and inputs there; tolerances are the CPU ones except where `tests/parity` documents a CUDA one);
* the fast-mode agreement tests of CI (`tests/test_*_fast.py`, which run on the CPU) and the same agreement
  bound on the device itself (`tools/device_agreement.py`: faithful against default fast mode, which on CUDA
  means fp16 encoders and channels_last);
* a short `make bench` on a generated 480x854 video (faithful and fast: frames/s and peak memory per
  paper, GIS seconds per round);
* `torchrun --nproc_per_node=<GPUs>` evaluation on a generated sample when there are two or more GPUs;

and writes `outputs/gpu-check/report.md` (device, driver, torch/CUDA versions, a pass/fail line per step and
each step's table; full logs in `logs/` next to it), exiting 1 when any step fails. The correctness steps run
side by side, the bench and torchrun alone; the timeouts bound the whole plan to 8 minutes (`--timeout-scale`
stretches them on a slower machine). No GPU has run this plan yet: the timeouts are estimates.

Without CUDA it says so in one line and does a dry run of the same plan instead: every input generated, every
command listed in the report, nothing run or timed; exit status 0. `--dry-run` forces that on a GPU machine;
`--steps 'parity-*,bench'` runs a subset (shell-style patterns over the step names).

    python tools/gpu_check.py [--out outputs/gpu-check] [--dry-run] [--steps PATTERNS] [--timeout-scale 2]
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from common.data.output_folder import check_output_folder, write_text_atomic
from common.data.synthetic import make_davis_sample
from common.runtime.errors import UserError, run_cli

REPO = Path(__file__).resolve().parents[1]
PAPERS = ("bmvos", "emvos", "tbd", "hmmn", "gis")

# The benchmark video: `make bench`'s own default size (480x854, 2 objects, seed 0), fewer timed runs so the whole
# check stays within its budget. vos.bench generates the identical video itself (same generator, seed and size).
BENCH = {"frames": 10, "height": 480, "width": 854, "objects": 2, "runs": 3}
BUDGET_S = 8 * 60
NO_CUDA_LINE = ("gpu-check: no CUDA device (torch.cuda.is_available() is False); dry run of the plan only, "
                "nothing run or timed")
LOG_TAIL_LINES = 30


@dataclass
class Step:
    """One command of the plan. `summary(log_text)` turns its output into a Markdown block (a table)."""
    name: str
    checks: str
    argv: List[str]
    timeout_s: int
    env: Dict[str, str] = field(default_factory=dict)
    min_gpus: int = 1
    outputs: List[Path] = field(default_factory=list)  # removed before the step runs: no stale tables
    summary: Optional[Callable[[str], str]] = None
    group: str = ""  # steps of one group run side by side; "" = a group of its own

    def __post_init__(self) -> None:
        self.group = self.group or self.name


@dataclass
class Outcome:
    step: Step
    status: str          # PASS, FAIL, TIMEOUT, SKIPPED, PLANNED, INTERRUPTED
    seconds: float = 0.0
    detail: str = ""     # one line: pytest's summary, the exit status, why it was skipped
    block: str = ""      # the step's table or the tail of its log


# ---------------------------------------------------------------------------------------------------------------
# Inputs and plan

def input_paths(work: Path) -> Dict[str, Path]:
    """Where the steps' inputs go (DAVIS-layout roots): the 480p benchmark video, a small sample for torchrun."""
    return {"bench-480p": work / "inputs" / "bench-480p" / "DAVIS", "sample": work / "inputs" / "sample" / "DAVIS"}


def prepare_inputs(inputs: Dict[str, Path]) -> None:
    """Generate the inputs (deterministic: a rerun rewrites the same files)."""
    make_davis_sample(inputs["bench-480p"], seed=0, n_videos=1, n_frames=BENCH["frames"], height=BENCH["height"],
                      width=BENCH["width"], n_objects=BENCH["objects"])
    make_davis_sample(inputs["sample"], seed=0, n_videos=2, n_frames=6, height=96, width=160)


def describe_inputs(inputs: Dict[str, Path]) -> str:
    what = {"bench-480p": f"{BENCH['frames']} frames of {BENCH['height']}x{BENCH['width']}, {BENCH['objects']} "
                          "objects, seed 0 (device agreement; vos.bench generates the same video)",
            "sample": "DAVIS layout, 2 videos of 6 frames, 96x160 (torchrun evaluation)"}
    lines = ["| input | path | what |", "| --- | --- | --- |"]
    for name, path in inputs.items():
        lines.append(f"| {name} | `{_shown(path)}` | {what.get(name, '')} |")
    return "\n".join(lines)


def pytest_summary(log: str) -> str:
    """pytest's last line ("3 passed, 1 failed in 9.1s"), or '' when it has none."""
    for line in reversed(log.strip().splitlines()):
        if any(word in line for word in (" passed", " failed", " error", "no tests ran")):
            return line.strip("= ").strip()
    return ""


def _json_table(path: Path, render: Callable[[dict], str]) -> Callable[[str], str]:
    def summary(_log: str) -> str:
        return render(json.loads(path.read_text())) if path.is_file() else f"(no `{_shown(path)}` was written)"
    return summary


def bench_table(data: dict) -> str:
    columns = [("fps", "frames/s", ".2f"), ("ms_per_frame", "ms/frame", ".1f"),
               ("encoder_ms_per_frame", "encoder ms", ".1f"), ("seconds_per_round", "s/round", ".2f"),
               ("speedup", "speed-up", ".2f"), ("peak_memory_mib", "peak MiB", ".0f")]
    lines = ["| method | mode | " + " | ".join(title for _, title, _ in columns) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
    for row in data["rows"]:
        cells = [format(row[key], spec) if key in row else "-" for key, _, spec in columns]
        lines.append(f"| {row['method']} | {row['mode']} | " + " | ".join(cells) + " |")
    header = ", ".join(f"{k}: {v}" for k, v in data.get("header", {}).items())
    return f"{header}\n\n" + "\n".join(lines)


def agreement_table(data: dict) -> str:
    return f"device: {data['device']}\n\n{data['table']}"


def build_plan(work: Path, inputs: Dict[str, Path], n_gpus: int, python: str = sys.executable) -> List[Step]:
    """Every step, in the order it runs. `n_gpus` sets torchrun's process count (2 in a plan made without GPUs).

    The correctness steps share one group and run side by side (one GPU, many CPU cores: CI's agreement tests
    use one thread each); the bench and torchrun run alone, so that nothing else competes with their timings."""
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    on_device = {"VOS_TEST_DEVICE": "cuda"}
    checks = dict(timeout_s=240, group="correctness")
    steps: List[Step] = []
    for paper in PAPERS:
        steps.append(Step(f"parity-{paper}", f"{paper}'s parity fixtures on the device",
                          pytest + [f"tests/parity/test_{paper}.py"], env=on_device, summary=pytest_summary, **checks))
    steps.append(Step("parity-shared", "derived fixtures (val_frame_ids, omitted outputs) on the device; the "
                      "metric fixtures (CPU evaluator)", pytest + ["tests/parity/test_adapters.py",
                                                                    "tests/parity/test_metrics.py"],
                      env=on_device, summary=pytest_summary, **checks))
    for paper in PAPERS:
        steps.append(Step(f"fast-ci-{paper}", f"CI's fast-mode agreement tests of {paper} (on the CPU, as in CI)",
                          pytest + [f"tests/test_{paper}_fast.py"], summary=pytest_summary, **checks))
    agreement = work / "device-agreement.json"
    steps.append(Step("fast-device", "faithful vs default fast mode on the device, J&F within 0.1, all papers "
                      "(480p video)", [python, "tools/device_agreement.py", "--davis", str(inputs["bench-480p"]),
                                       "--json", str(agreement), "--device", "cuda"],
                      outputs=[agreement], summary=_json_table(agreement, agreement_table), **checks))
    bench = work / "bench.json"
    steps.append(Step("bench", f"`make bench`: faithful and fast, {BENCH['frames']} frames of "
                      f"{BENCH['height']}x{BENCH['width']}, median of {BENCH['runs']} runs",
                      [python, "-m", "vos.bench", "--device", "cuda", "--frames", str(BENCH["frames"]),
                       "--height", str(BENCH["height"]), "--width", str(BENCH["width"]),
                       "--objects", str(BENCH["objects"]), "--runs", str(BENCH["runs"]), "--json", str(bench)],
                      timeout_s=170, outputs=[bench], summary=_json_table(bench, bench_table)))
    nproc = max(2, n_gpus)
    torchrun_out = work / "torchrun"
    steps.append(Step("torchrun", f"TBD evaluation sharded over {nproc} GPUs (NCCL), scored by rank 0",
                      [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
                       "tbd.run", "--test", "--davis", str(inputs["sample"]), "--weights", "seeded", "--no-resize",
                       "--output", str(torchrun_out), "--device", "cuda"],
                      timeout_s=60, min_gpus=2, outputs=[torchrun_out]))
    return steps


def groups(steps: Sequence[Step]) -> List[List[Step]]:
    """Consecutive steps of the same group, in plan order."""
    out: List[List[Step]] = []
    for step in steps:
        if out and out[-1][0].group == step.group:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def plan_seconds(steps: Sequence[Step]) -> int:
    """The longest the plan can take: each group lasts at most its longest timeout."""
    return sum(max(s.timeout_s for s in group) for group in groups(steps))


def select(steps: List[Step], patterns: Optional[str]) -> List[Step]:
    if not patterns:
        return steps
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    unmatched = [p for p in wanted if not any(fnmatch.fnmatchcase(s.name, p) for s in steps)]
    if not wanted or unmatched:
        raise UserError(f"--steps {patterns!r}: {', '.join(unmatched) or 'no pattern'} matches no step; the steps "
                        f"are {', '.join(s.name for s in steps)}")
    return [s for s in steps if any(fnmatch.fnmatchcase(s.name, p) for p in wanted)]


# ---------------------------------------------------------------------------------------------------------------
# Running

def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@dataclass
class _Running:
    step: Step
    proc: subprocess.Popen
    log_path: Path
    start: float


def _start(step: Step, logs: Path) -> _Running:
    """The step in its own process group (killed whole on timeout or Ctrl-C), its output in its log."""
    for path in step.outputs:
        _remove(path)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{step.name}.log"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(step.argv, cwd=REPO, env={**os.environ, **step.env, "PYTHONPATH": pythonpath},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return _Running(step, proc, log_path, time.perf_counter())


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _finish(run: _Running, status: str, detail: str) -> Outcome:
    step = run.step
    outcome = Outcome(step, status, time.perf_counter() - run.start, detail)
    text = run.log_path.read_text(errors="replace")
    if step.summary is pytest_summary:
        outcome.detail = pytest_summary(text) or detail
    elif step.summary is not None:
        outcome.block = step.summary(text)  # also on failure: the agreement table shows which paper is off
    if status != "PASS":
        tail = "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])
        outcome.block += f"\n\nLast lines of `{_shown(run.log_path)}`:\n\n```\n{tail}\n```"
    return outcome


def run_group(steps: Sequence[Step], logs: Path) -> List[Outcome]:
    """Run the steps side by side, each until it exits or its own timeout passes."""
    running = [_start(step, logs) for step in steps]
    done: Dict[str, Outcome] = {}
    try:
        while len(done) < len(running):
            for run in running:
                if run.step.name in done:
                    continue
                rc = run.proc.poll()
                if rc is not None:
                    status, detail = ("PASS", "exit status 0") if rc == 0 else ("FAIL", f"exit status {rc}")
                elif time.perf_counter() - run.start > run.step.timeout_s:
                    _kill(run.proc)
                    status, detail = "TIMEOUT", f"killed after its {run.step.timeout_s} s timeout"
                else:
                    continue
                done[run.step.name] = _finish(run, status, detail)
                print(f"gpu-check: {run.step.name}: {status} in {done[run.step.name].seconds:.0f} s  "
                      f"{done[run.step.name].detail}", flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        for run in running:
            if run.step.name not in done:
                _kill(run.proc)
                done[run.step.name] = _finish(run, "INTERRUPTED", "interrupted (Ctrl-C)")
    return [done[step.name] for step in steps]


def execute(steps: Sequence[Step], work: Path, n_gpus: int, dry_run: bool) -> List[Outcome]:
    outcomes: List[Outcome] = []
    for group in groups(steps):
        if dry_run:
            outcomes += [Outcome(s, "PLANNED", detail="" if s.min_gpus <= 1 else f"runs only with >= {s.min_gpus} "
                                                                                  "GPUs") for s in group]
            continue
        runnable = [s for s in group if n_gpus >= s.min_gpus]
        if runnable:
            print(f"gpu-check: {', '.join(s.name for s in runnable)} (timeout "
                  f"{max(s.timeout_s for s in runnable)} s) ...", flush=True)
        results = {o.step.name: o for o in run_group(runnable, work / "logs")} if runnable else {}
        outcomes += [results.get(s.name) or Outcome(s, "SKIPPED", detail=f"needs >= {s.min_gpus} GPUs, this "
                                                                        f"machine has {n_gpus}") for s in group]
        if any(o.status == "INTERRUPTED" for o in results.values()):
            break
    return outcomes


def failed(outcomes: Sequence[Outcome]) -> bool:
    return any(o.status in ("FAIL", "TIMEOUT", "INTERRUPTED") for o in outcomes)


# ---------------------------------------------------------------------------------------------------------------
# Report

def _shown(path: Path) -> str:
    """A path as a reader can type it from the repository root."""
    try:
        return str(Path(path).absolute().relative_to(REPO))  # absolute, not resolved: .venv/bin/python is a link
    except ValueError:
        return str(path)


def shown_command(step: Step) -> str:
    argv = [_shown(Path(a)) if os.path.isabs(a) else a for a in step.argv]
    return " ".join([f"{k}={v}" for k, v in step.env.items()] + [shlex.quote(a) for a in argv])


def _nvidia_smi(query: str) -> str:
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi not found)"
    return ", ".join(sorted(set(done.stdout.split()))) if done.returncode == 0 else "unknown (nvidia-smi failed)"


def environment(cuda: bool) -> Dict[str, str]:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "torch": torch.__version__,
            "CUDA (torch build)": str(torch.version.cuda), "cuDNN": str(torch.backends.cudnn.version())}
    if cuda:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        props = torch.cuda.get_device_properties(0)
        info["devices"] = "; ".join(f"cuda:{i} {name}" for i, name in enumerate(names))
        info["capability, memory"] = f"sm_{props.major}{props.minor}, {props.total_memory / 2 ** 30:.0f} GiB"
        info["driver"] = _nvidia_smi("driver_version")
    else:
        info["devices"] = "none: torch.cuda.is_available() is False"
    return info


def render_report(info: Dict[str, str], inputs: Dict[str, Path], outcomes: Sequence[Outcome], dry_run: bool,
                  cuda: bool) -> str:
    if dry_run:
        verdict = ("DRY RUN: " + ("no CUDA device, so " if not cuda else "") + "nothing was run or timed; the plan "
                   "below is what `make gpu-check` runs on a CUDA device.")
    else:
        verdict = "FAILED: see the steps marked FAIL / TIMEOUT." if failed(outcomes) else "PASSED: every step passed."
    lines = ["# gpu-check report", "", f"**{verdict}**", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    total = plan_seconds([o.step for o in outcomes])
    lines += ["", "## Inputs (generated)", "", describe_inputs(inputs), "",
              f"## Steps (at most {total} s: steps of one group run side by side; budget {BUDGET_S} s)", "",
              "| step | group | checks | status | seconds | result | command |",
              "| --- | --- | --- | --- | ---: | --- | --- |"]
    for o in outcomes:
        seconds = f"{o.seconds:.0f}" if o.status not in ("PLANNED", "SKIPPED") else "-"
        lines.append(f"| {o.step.name} | {o.step.group} | {o.step.checks} | {o.status} | {seconds} | {o.detail} | "
                     f"`{shown_command(o.step)}` (timeout {o.step.timeout_s} s) |")
    for o in outcomes:
        if o.block:
            lines += ["", f"## {o.step.name}: {o.status}", "", o.block]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu-check",
                        help="folder of the report, logs and generated inputs (default: outputs/gpu-check)")
    parser.add_argument("--dry-run", action="store_true", help="generate the inputs and list the plan, run nothing")
    parser.add_argument("--steps", help="comma-separated shell-style patterns of the steps to run (default: all)")
    parser.add_argument("--timeout-scale", type=float, default=1.0,
                        help="multiply every step's timeout (the timeouts are sized for an H100-class machine)")
    args = parser.parse_args(argv)
    if not args.timeout_scale > 0:
        raise UserError(f"--timeout-scale {args.timeout_scale}: pass a positive factor, e.g. 2")

    cuda = torch.cuda.is_available()
    n_gpus = torch.cuda.device_count() if cuda else 0
    check_output_folder(args.out, "--out")
    work = args.out.resolve()
    inputs = input_paths(work)
    steps = select(build_plan(work, inputs, n_gpus), args.steps)  # a wrong --steps fails before any work
    for step in steps:
        step.timeout_s = max(1, round(step.timeout_s * args.timeout_scale))
    dry_run = args.dry_run or not cuda
    if not cuda:
        print(NO_CUDA_LINE, flush=True)
    prepare_inputs(inputs)
    outcomes = execute(steps, work, n_gpus, dry_run)
    report = work / "report.md"
    write_text_atomic(report, render_report(environment(cuda), inputs, outcomes, dry_run, cuda))
    print(f"gpu-check: report written to {_shown(report)}")
    if any(o.status == "INTERRUPTED" for o in outcomes):
        return 130
    return 1 if failed(outcomes) else 0


if __name__ == "__main__":
    run_cli(main)
