"""`make gpu-check` (tools/gpu_check.py) on a machine without CUDA: the dry run lists the whole plan and generates
its inputs; the executor behind a real run marks failing and hung steps and makes the check exit non-zero.

CUDA is hidden from the dry run's process (CUDA_VISIBLE_DEVICES=""), so it is the no-CUDA path on any machine.
The real run is exercised with injected steps (plain Python commands): the same executor, report and exit
status a GPU run goes through, without pretending to have a GPU for the steps themselves.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tools import gpu_check

REPO = Path(__file__).resolve().parents[1]
PAPERS = ("bmvos", "emvos", "tbd", "hmmn", "gis")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "tools/gpu_check.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def plan_rows(report: str) -> dict:
    """The steps table of the report: step name -> (group, checks, status, seconds, result, command)."""
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[3] in ("PLANNED", "PASS", "FAIL", "TIMEOUT", "SKIPPED", "INTERRUPTED"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "gpu-check"
    done = run_cli("--out", str(out))
    return out, done


def test_without_cuda_it_says_so_in_one_line_and_exits_0(dry_run):
    out, done = dry_run
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == gpu_check.NO_CUDA_LINE
    assert sum("CUDA" in line for line in lines) == 1, done.stdout
    report = (out / "report.md").read_text()
    assert "DRY RUN: no CUDA device" in report
    assert "torch.cuda.is_available() is False" in report


def test_the_plan_lists_every_paper_s_parity_agreement_and_bench_step(dry_run):
    out, _ = dry_run
    rows = plan_rows((out / "report.md").read_text())
    assert all(cells[2] == "PLANNED" for cells in rows.values()), rows
    for paper in PAPERS:
        command = rows[f"parity-{paper}"][5]
        assert "VOS_TEST_DEVICE=cuda" in command and f"tests/parity/test_{paper}.py" in command
        assert f"tests/test_{paper}_fast.py" in rows[f"fast-ci-{paper}"][5]
    assert "tools/device_agreement.py" in rows["fast-device"][5] and "--device cuda" in rows["fast-device"][5]
    bench = rows["bench"][5]
    assert "-m vos.bench" in bench and "--height 480 --width 854" in bench and "--device cuda" in bench
    assert "--nproc_per_node=2" in rows["torchrun"][5] and ">= 2 GPUs" in rows["torchrun"][4]


def test_every_parity_and_fast_test_file_is_in_the_plan_and_exists(tmp_path):
    """The plan cannot drift from the test suite: a new parity or agreement module is picked up or fails here."""
    steps = gpu_check.build_plan(tmp_path, gpu_check.input_paths(tmp_path), n_gpus=0)
    named = {arg for step in steps for arg in step.argv if arg.startswith("tests/")}
    assert all((REPO / name).is_file() for name in named), named
    wanted = {str(p.relative_to(REPO)) for p in (REPO / "tests" / "parity").glob("test_*.py")}
    wanted |= {str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*_fast.py")}
    assert wanted <= named, sorted(wanted - named)
    assert gpu_check.plan_seconds(steps) <= gpu_check.BUDGET_S
    assert [s.name for s in gpu_check.groups(steps)[-2]] == ["bench"]  # timed alone


def test_the_dry_run_generates_every_input_and_times_nothing(dry_run):
    out, _ = dry_run
    bench = out / "inputs" / "bench-480p" / "DAVIS"
    (video,) = (bench / "ImageSets" / "2017" / "val.txt").read_text().split()  # the one video vos.bench reads
    frames = sorted((bench / "JPEGImages" / "480p" / video).glob("*.jpg"))
    assert len(frames) == gpu_check.BENCH["frames"]
    with Image.open(frames[0]) as image:
        assert image.size == (gpu_check.BENCH["width"], gpu_check.BENCH["height"])
    sample = out / "inputs" / "sample" / "DAVIS"
    assert len((sample / "ImageSets" / "2017" / "val.txt").read_text().split()) == 2
    assert not (out / "logs").exists() and not (out / "bench.json").exists()
    report = (out / "report.md").read_text()
    assert "inputs/bench-480p/DAVIS" in report and "inputs/sample/DAVIS" in report


def test_an_unknown_step_pattern_is_one_error_line_before_any_work(tmp_path):
    done = run_cli("--out", str(tmp_path / "out"), "--steps", "parity-*,no-such-step")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: ")
    assert "no-such-step" in done.stderr and "parity-bmvos" in done.stderr
    assert not (tmp_path / "out").exists()


def test_steps_filter_keeps_matching_steps(tmp_path):
    steps = gpu_check.build_plan(tmp_path, gpu_check.input_paths(tmp_path), n_gpus=0)
    assert [s.name for s in gpu_check.select(steps, "parity-*,bench")] == \
        [f"parity-{p}" for p in PAPERS] + ["parity-shared", "bench"]


def python_step(name: str, code: str, timeout_s: int = 120) -> gpu_check.Step:
    return gpu_check.Step(name, f"injected: {name}", [sys.executable, "-c", code], timeout_s=timeout_s)


@pytest.fixture
def fake_gpu(monkeypatch):
    """main() as on a one-GPU machine whose plan is `steps` (the steps really run; only CUDA is pretended)."""
    def with_plan(steps):
        monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(gpu_check.torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(gpu_check, "environment", lambda cuda: {"devices": "cuda:0 (injected test plan)"})
        monkeypatch.setattr(gpu_check, "prepare_inputs", lambda inputs: None)
        monkeypatch.setattr(gpu_check, "build_plan", lambda work, inputs, n_gpus: steps)
    return with_plan


def test_a_failing_or_hung_step_makes_the_check_fail(tmp_path, fake_gpu, capsys):
    fake_gpu([python_step("passes", "print('fine')"),
              python_step("fails", "print('something broke'); raise SystemExit(3)"),
              # a shell starts in milliseconds, so 'started' is logged long before the timeout even on a busy machine
              gpu_check.Step("hangs", "injected: hangs", ["sh", "-c", "echo started; exec sleep 600"], timeout_s=10),
              gpu_check.Step("needs-two", "two GPUs", [sys.executable, "-c", "raise SystemExit(1)"], 60, min_gpus=2)])
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    report = (tmp_path / "report.md").read_text()
    rows = plan_rows(report)
    assert {name: cells[2] for name, cells in rows.items()} == \
        {"passes": "PASS", "fails": "FAIL", "hangs": "TIMEOUT", "needs-two": "SKIPPED"}
    assert "FAILED" in report and "exit status 3" in rows["fails"][4]
    assert "something broke" in report  # the failing step's log tail is in the report
    assert "started" in (tmp_path / "logs" / "hangs.log").read_text()
    assert "gpu-check: fails: FAIL" in capsys.readouterr().out


def test_steps_of_one_group_run_side_by_side(tmp_path, fake_gpu):
    """The first step waits for a file only the second one writes: run one after the other, it would time out."""
    flag = tmp_path / "flag"
    waits = python_step("waits", f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)")
    writes = python_step("writes", f"open({str(flag)!r}, 'w').close()")
    waits.group = writes.group = "together"
    fake_gpu([waits, writes])
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 0


def test_all_steps_passing_exits_0(tmp_path, fake_gpu):
    fake_gpu([python_step("passes", "print('fine')"), python_step("also", "pass")])
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "PASSED: every step passed" in report
    assert {cells[2] for cells in plan_rows(report).values()} == {"PASS"}


def test_pytest_summary_reads_the_last_result_line():
    log = "....F\nFAILED tests/x.py::test_y - AssertionError\n==== 1 failed, 4 passed in 3.2s ====\n"
    assert gpu_check.pytest_summary(log) == "1 failed, 4 passed in 3.2s"
    assert gpu_check.pytest_summary("Traceback ...\nImportError: no module\n") == ""
