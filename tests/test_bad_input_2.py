"""Bad input, round two (issue #24): each row fails early with one `error:` line and leaves nothing behind, written
files respect the umask, Ctrl-C says what is true for the command, and the README friction items."""
from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from PIL import Image

from common.data.synthetic import make_davis_sample, make_sample, make_ytvos_sample
from common.runtime.errors import UserError, run_cli
from tests.test_bad_input import REPO, H, W, _child_env, assert_one_error, command, run

SEMI = ("bmvos", "emvos", "tbd", "hmmn")


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Dict[str, Path]:
    """A valid DAVIS sample with scribbles, a copy with a truncated frame, one with an RGB first mask, one with
    a scribble file that is not JSON."""
    from common.data.scribbles import write_robot_scribbles

    root = tmp_path_factory.mktemp("bad2")
    good = make_davis_sample(root / "DAVIS", n_videos=1, n_frames=3, height=H, width=W, n_train=0)
    sequence = (good / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    write_robot_scribbles(good, sequence)
    copies = {}
    for name in ("truncated", "rgb_mask", "bad_scribble"):
        copies[name] = root / name / "DAVIS"
        shutil.copytree(good, copies[name])
    frame = copies["truncated"] / "JPEGImages" / "480p" / sequence / "00002.jpg"
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    mask = copies["rgb_mask"] / "Annotations" / "480p" / sequence / "00000.png"
    with Image.open(mask) as image:
        image.convert("RGB").save(mask)
    scribble = copies["bad_scribble"] / "Scribbles" / sequence / "001.json"
    scribble.write_text('{"scribbles": [')
    return {"good": good, "sequence": sequence, "frame": frame, "mask": mask, "scribble": scribble, **copies}


@pytest.mark.parametrize("entry", SEMI)
@pytest.mark.parametrize("damage", ["truncated", "rgb_mask"])
def test_damaged_frame_or_rgb_mask_fails_before_the_weights(davis, entry, damage, tmp_path, capsys):
    out = tmp_path / "out"
    main, argv = command(entry, davis[damage], davis[damage], tmp_path, davis["sequence"], out)
    code, err = run(main, argv, capsys)  # the default official weights are not cached: loading them would fail
    assert_one_error(code, err, str(davis["frame"] if damage == "truncated" else davis["mask"]))
    assert not out.exists()


def test_scribble_that_is_not_json(davis, tmp_path, capsys):
    out = tmp_path / "out"
    main, argv = command("gis-davis", davis["bad_scribble"], davis["bad_scribble"], tmp_path, davis["sequence"], out)
    code, err = run(main, argv, capsys)
    assert_one_error(code, err, str(davis["scribble"]), "not valid JSON")
    assert not out.exists()


def test_youtube_meta_that_is_not_json(tmp_path, capsys):
    root = make_ytvos_sample(tmp_path / "YTVOS", n_videos=1, n_frames=6, height=H, width=W)
    meta = root / "valid" / "meta.json"
    meta.write_text("<html>")
    main = __import__("tbd.run", fromlist=["main"]).main
    out = tmp_path / "out"
    code, err = run(main, ["--test", "--ytvos", str(root), "--output", str(out), "--sets", "ytvos18-valid"], capsys)
    assert_one_error(code, err, str(meta), "not valid JSON")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- devices

def test_unknown_device_is_one_line(capsys):
    from common.runtime.device import pick_device

    with pytest.raises(UserError, match="--device 'foo' is not a device name"):
        pick_device("foo")


def test_unknown_device_in_segment(davis, tmp_path, capsys):
    from vos.segment import main

    frames = davis["good"] / "JPEGImages" / "480p" / davis["sequence"]
    mask = davis["good"] / "Annotations" / "480p" / davis["sequence"] / "00000.png"
    code, err = run(main, ["--method", "tbd", "--frames", str(frames), "--mask", str(mask), "--weights", "seeded",
                           "--out", str(tmp_path / "seg"), "--device", "foo"], capsys)
    assert_one_error(code, err, "--device 'foo'")
    assert not (tmp_path / "seg").exists()


# ---------------------------------------------------------------------------------------------- output folders

def _clip_args(davis) -> list:
    frames = davis["good"] / "JPEGImages" / "480p" / davis["sequence"]
    mask = davis["good"] / "Annotations" / "480p" / davis["sequence"] / "00000.png"
    return ["--frames", str(frames), "--mask", str(mask), "--weights", "seeded", "--native-size", "--device", "cpu"]


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/proc")  # nobody can create files there, root included
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked


@pytest.mark.parametrize("where", ["file", "below_file", "unwritable"])
@pytest.mark.parametrize("tool", ["segment", "compare", "synthetic"])
def test_output_that_cannot_be_a_folder_fails_first(davis, tool, where, tmp_path, capsys):
    if where == "unwritable" and not Path("/proc/self").is_dir() and os.geteuid() == 0:
        pytest.skip("running as root without /proc")
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    out = {"file": blocker, "below_file": blocker / "out", "unwritable": _unwritable(tmp_path) / "out"}[where]
    if tool == "segment":
        from vos.segment import main
        argv = ["--method", "tbd", *_clip_args(davis), "--out", str(out)]
    elif tool == "compare":
        from vos.compare import main
        argv = [*_clip_args(davis), "--methods", "tbd", "--out", str(out)]
    else:
        from common.data.synthetic import main
        argv = [str(out), "--videos", "1", "--frames", "2", "--height", "32", "--width", "32", "--coco-images", "1"]
    code, err = run(main, argv, capsys)
    expected = {"file": "is a file", "below_file": "which is a file", "unwritable": "cannot write into"}[where]
    assert_one_error(code, err, str(out), expected)
    assert blocker.read_text() == "not a folder" and (out == blocker or not out.exists())


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_training_output_dir_that_cannot_be_a_folder_fails_first(tmp_path, where, capsys):
    from common.data.output_folder import check_checkpoint_folder

    blocker = tmp_path / "ckpt.txt"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "run"
    with pytest.raises(UserError, match=re.escape(f"--output-dir {out}")):
        check_checkpoint_folder(out)


@pytest.mark.parametrize("module", ["bmvos.train", "emvos.run", "tbd.run"])
def test_training_command_lines_check_their_output_dir(module, tmp_path, capsys):
    """The three training command lines call the check right after parsing (before any data or model)."""
    main = __import__(module, fromlist=["main"]).main
    blocker = tmp_path / "ckpt.txt"
    blocker.write_text("x")
    argv = ([] if module == "bmvos.train" else ["--train"]) + ["--coco", str(tmp_path / "nowhere"),
                                                               "--output-dir", str(blocker)]
    code, err = run(main, argv, capsys)
    assert_one_error(code, err, f"--output-dir {blocker}", "is a file")


def test_synthetic_rejects_empty_parts_before_writing(tmp_path, capsys):
    from common.data.synthetic import main

    for flag in ("--ytvos-frames", "--coco-images"):
        code, err = run(main, [str(tmp_path / "sample"), "--videos", "1", "--frames", "2", flag, "0"], capsys)
        assert_one_error(code, err, f"{flag} 0")
        assert not (tmp_path / "sample").exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- vos.compare

def test_compare_ground_truth_of_another_size(davis, tmp_path, capsys):
    from vos.compare import main

    gt = tmp_path / "gt"
    shutil.copytree(davis["good"] / "Annotations" / "480p" / davis["sequence"], gt)
    odd = sorted(gt.glob("*.png"))[1]
    with Image.open(odd) as image:
        image.resize((W // 2, H // 2), Image.NEAREST).save(odd)
    out = tmp_path / "cmp"
    code, err = run(main, [*_clip_args(davis), "--gt", str(gt), "--methods", "tbd", "--out", str(out)], capsys)
    assert_one_error(code, err, str(odd), f"{W // 2}x{H // 2}", f"{W}x{H}")
    assert not out.exists()


def test_compare_into_head_ends_quietly(davis, tmp_path):
    """`python -m vos.compare ... | head -1`: status 141 as from SIGPIPE, no error line, nothing half-written."""
    out = tmp_path / "cmp"
    compare = subprocess.Popen([sys.executable, "-m", "vos.compare", *_clip_args(davis), "--methods", "tbd,bmvos",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(),
                               cwd=REPO)
    head = subprocess.run(["head", "-1"], stdin=compare.stdout, capture_output=True, text=True, timeout=300)
    compare.stdout.close()
    err = compare.stderr.read().decode()
    compare.wait(timeout=300)
    assert head.stdout == "== tbd ==\n"
    assert compare.returncode == 128 + signal.SIGPIPE, err
    assert "error:" not in err and "Traceback" not in err, err
    from vos.segment import is_finished
    leftovers = [p for p in out.iterdir() if not is_finished(p)] if out.exists() else []
    assert not leftovers  # only finished method folders, if any


# ---------------------------------------------------------------------------------------------- files written

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_writes_respect_the_umask(tmp_path, mask, mode):
    from common.data.output_folder import write_text_atomic

    previous = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "table.csv", "a,b\n")
        (tmp_path / "plain.csv").write_text("a,b\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "table.csv").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode) == mode


def test_weights_list_calls_a_truncated_file_not_usable(tmp_path, monkeypatch):
    import torch

    cache = tmp_path / "cache"
    path = cache / "tbd" / "TBD_davis.pth"
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    done = subprocess.run([sys.executable, "-m", "vos.weights", "list"], capture_output=True, text=True, cwd=REPO,
                          env=dict(_child_env(), VOS_WEIGHTS=str(cache)), timeout=120)
    line = next(l for l in done.stdout.splitlines() if l.startswith("tbd-davis "))
    assert "cached at" not in line and "truncated" in line and "fetch --force tbd-davis" in line


# ---------------------------------------------------------------------------------------------- Ctrl-C

def _interrupted_line(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.splitlines()
    assert err and err[-1].startswith("interrupted"), err
    return err[-1]


def _stop(*_args, **_kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_segment_says_the_clip_restarts(davis, tmp_path, capsys, monkeypatch):
    import vos.segment

    monkeypatch.setattr(vos.segment, "segment_clip", _stop)
    line = _interrupted_line(vos.segment.main, ["--method", "tbd", *_clip_args(davis), "--out", str(tmp_path / "s")],
                             capsys)
    assert "segments it again" in line and "resumes" not in line


def test_ctrl_c_in_evaluate_says_it_scores_again(davis, capsys, monkeypatch):
    import common.evaluation.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate", _stop)
    line = _interrupted_line(evaluate.main, ["--davis", str(davis["good"]), "--results", str(davis["good"])], capsys)
    assert "scores every sequence again" in line and "resumes" not in line


def test_ctrl_c_in_training_points_to_resume(tmp_path, capsys, monkeypatch):
    from common.data.output_folder import check_checkpoint_folder

    def main(argv):
        check_checkpoint_folder(tmp_path / "ckpt")
        raise KeyboardInterrupt

    assert "--resume" in _interrupted_line(main, [], capsys)


def test_ctrl_c_in_benchmark_runs_keeps_finished_videos_and_the_bar_is_not_redrawn(tmp_path, capsys):
    from common.data.datasets import DAVIS
    from common.inference.runner import run_videos
    from common.runtime.errors import RESUMES_AFTER_VIDEOS, on_interrupt

    root = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=2, height=H, width=W, n_train=0)

    def main(argv):
        on_interrupt(RESUMES_AFTER_VIDEOS)
        run_videos(DAVIS(root).videos(), _stop, tmp_path / "out", device="cpu")

    assert _interrupted_line(main, [], capsys) == f"interrupted; {RESUMES_AFTER_VIDEOS}"
    assert not (tmp_path / "out").exists()  # nothing finished: no empty folder either


def test_a_child_whose_parent_reports_stays_quiet(monkeypatch, capsys):
    """vos.compare's methods run with PARENT_REPORTS_INTERRUPT: Ctrl-C prints one line (the parent's), not two."""
    from common.runtime.errors import PARENT_REPORTS_INTERRUPT
    from vos.compare import check_child, child_env

    assert child_env()[PARENT_REPORTS_INTERRUPT]
    monkeypatch.setenv(PARENT_REPORTS_INTERRUPT, "1")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(_stop, [])
    assert exit_info.value.code == 130 and capsys.readouterr().err == ""
    with pytest.raises(KeyboardInterrupt):
        check_child(130, "vos.segment", "")
    with pytest.raises(BrokenPipeError):
        check_child(141, "vos.segment", "")


# ---------------------------------------------------------------------------------------------- README friction

def test_sample_has_the_youtube_ivos_layout(tmp_path):
    """`gis.ivos_main_youtube --youtube sample/YouTubeVOS --points-dir sample/YouTubeVOS/ivos_points` finds its
    input (tests/test_readme_commands.py runs the command itself)."""
    from common.data.ivos_points import VALIDATION_LIST, points_file
    from gis.youtube_session import YoutubeSession, check_videos

    ytvos = make_sample(tmp_path / "s", n_videos=1, n_frames=3, height=H, width=W, ytvos_frames=6,
                        coco_images=1)["ytvos"]
    points = ytvos / "ivos_points"
    check_videos(ytvos, points)
    session = YoutubeSession(ytvos, points_file(points, 5), points / VALIDATION_LIST)
    assert session.youtube_val_videos and (ytvos / "train" / "JPEGImages" / session.youtube_val_videos[0]).is_dir()


def test_agree_example_in_readme_is_what_the_command_prints(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = readme.split("What the `common.evaluation.agree` command above prints")[1].split("```")[1].strip("\n")
    sample = tmp_path / "vos-sample"
    subprocess.run([sys.executable, "-m", "common.data.synthetic", str(sample), "--videos", "2", "--frames", "5"],
                   check=True, capture_output=True, env=_child_env(), cwd=REPO, timeout=300)
    masks = str(sample / "DAVIS" / "Annotations" / "480p")
    done = subprocess.run([sys.executable, "-m", "common.evaluation.agree", "--ours", masks, "--theirs", masks,
                           "--csv-dir", str(tmp_path / "vos-agree")], capture_output=True, text=True,
                          env=_child_env(), cwd=REPO, timeout=300, check=True)
    assert done.stdout.strip("\n").replace(str(tmp_path), "/tmp") == block


def test_default_sample_folder_is_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "check-ignore", "-q", "sample/DAVIS"], cwd=REPO)
    assert done.returncode == 0


def test_seeded_notice_names_the_paper_once():
    from common.hub.checkpoints import seeded_notice

    notice = seeded_notice("GIS-RAmap")
    assert notice.count("GIS-RAmap") == 1 and not notice.startswith("GIS-RAmap")


# `--help` and an argument error of every entry point answer without importing torch (3-10 s on a loaded machine).
# gis.app (its own module tree) is not in the list yet: its command line still imports the model first.
ENTRIES = ("bmvos.main_runfile", "bmvos.train", "emvos.run", "tbd.run", "hmmn.eval_davis", "gis.ivos_main_davis",
           "gis.ivos_main_youtube", "vos.segment", "vos.compare", "vos.bench", "vos.weights", "vos.precomputed",
           "vos.verify", "vos.demo", "common.data.synthetic", "common.evaluation.evaluate", "common.evaluation.agree",
           "bmvos.reproduce", "emvos.reproduce", "tbd.reproduce", "hmmn.reproduce", "gis.reproduce", "hmmn.train",
           "gis.app", "gis.app.bench", "vos.train_sample", "vos.bench_metrics")
PROBE = ("import runpy, sys; sys.argv = [{module!r}, {flag!r}]\n"
         "try:\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
         "except SystemExit as end:\n    print('EXIT', end.code)\n"
         "print('TORCH' if 'torch' in sys.modules else 'LIGHT')")


@pytest.mark.parametrize("flag", ["--help", "--no-such-flag"])
@pytest.mark.parametrize("module", ENTRIES)
def test_help_and_argument_errors_do_not_import_torch(module, flag):
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module, flag=flag)], capture_output=True,
                          text=True, env=_child_env(), cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.stdout.splitlines()[-2:] == [f"EXIT {0 if flag == '--help' else 2}", "LIGHT"], done.stdout[-500:]
