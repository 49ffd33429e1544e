"""Bad input fails early and clearly in every evaluation entry point: one `error:` line, exit status 2,
nothing written, and before any weights load (these runs have no weights to load). Also the shared
command-line behaviour: the no-GPU notice, Ctrl-C during J&F scoring, and output piped into `head`."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import torch
from PIL import Image

from common.data.synthetic import make_davis_sample, make_ytvos_sample
from common.inference.benchmark_sets import default_sets
from common.runtime.device import NO_GPU_NOTICE
from common.runtime.errors import run_cli

H, W = 32, 48
REPO = Path(__file__).resolve().parents[1]
ENTRIES = ("bmvos", "emvos", "tbd", "hmmn", "gis-davis", "gis-youtube")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Dict[str, Path]:
    """A valid DAVIS tree (with GIS's scribbles), a YouTube-IVOS tree with its points, and copies of both
    with one annotation at half the frame size."""
    from common.data.scribbles import write_robot_scribbles
    from gis.youtube_session import write_synthetic_points

    root = tmp_path_factory.mktemp("bad_input")
    davis = make_davis_sample(root / "DAVIS", n_videos=1, n_frames=3, height=H, width=W, n_train=0)
    sequence = (davis / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    write_robot_scribbles(davis, sequence)
    sample = make_ytvos_sample(root / "ytvos", n_videos=1, n_frames=10, height=H, width=W)
    youtube = root / "YouTubeVOS2019"  # the validation sample laid out as YouTube-VOS train, as GIS reads it
    shutil.copytree(sample / "valid" / "JPEGImages", youtube / "train" / "JPEGImages")
    shutil.copytree(sample / "valid_gt" / "Annotations", youtube / "train" / "Annotations")
    videos = sorted(p.name for p in (youtube / "train" / "JPEGImages").iterdir())
    points = write_synthetic_points(youtube, root / "points", videos, n_points=(5,))

    bad_davis, bad_youtube = root / "bad" / "DAVIS", root / "bad" / "YouTubeVOS2019"
    shutil.copytree(davis, bad_davis)
    shutil.copytree(youtube, bad_youtube)
    bad_davis_mask = bad_davis / "Annotations" / "480p" / sequence / "00001.png"
    bad_youtube_mask = sorted((bad_youtube / "train" / "Annotations" / videos[0]).glob("*.png"))[1]
    for mask in (bad_davis_mask, bad_youtube_mask):
        with Image.open(mask) as image:
            image.resize((W // 2, H // 2), Image.NEAREST).save(mask)
    return {"davis": davis, "youtube": youtube, "points": points, "sequence": sequence,
            "bad_davis": bad_davis, "bad_youtube": bad_youtube,
            "bad_davis_mask": bad_davis_mask, "bad_youtube_mask": bad_youtube_mask}


def command(entry: str, davis: Path, youtube: Path, points: Path, sequence: str,
            out: Path) -> Tuple[Callable, List[str]]:
    """(main, argv) of one entry point on the given data, writing to `out`."""
    if entry == "bmvos":
        from bmvos.main_runfile import main
        return main, ["--davis", str(davis), "--output", str(out), "--dataset", "DAVIS17_val"]
    if entry in ("emvos", "tbd"):
        main = __import__(f"{entry}.run", fromlist=["main"]).main
        return main, ["--test", "--davis", str(davis), "--output", str(out), "--sets", "davis17-val"]
    if entry == "hmmn":
        from hmmn.eval_davis import main
        return main, ["-s", "val", "-y", "17", "-D", str(davis), "--output", str(out)]
    if entry == "gis-davis":
        from gis.ivos_main_davis import main
        return main, ["--davis", str(davis), "--output", str(out), "--weights", "none", "--metric", "J_AND_F",
                      "--sequences", sequence, "--scribble-indices", "1", "--max-interactions", "1"]
    from gis.ivos_main_youtube import main
    return main, ["--youtube", str(youtube), "--output", str(out), "--weights", "none", "--points", "5",
                  "--points-dir", str(points), "--short-side", str(H)]


def run(main: Callable, argv: List[str], capsys) -> Tuple[int, List[str]]:
    """Exit status and stderr lines of the entry point run as from the shell (through `run_cli`)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    return exit_info.value.code, capsys.readouterr().err.splitlines()


def assert_one_error(code: int, err: List[str], *parts: str) -> str:
    """Exit status 2, and the last stderr line is the only error: one line naming every part."""
    assert code == 2
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    assert not any("Traceback" in line for line in err)
    for part in parts:
        assert part in errors[0]
    return errors[0]


@pytest.mark.parametrize("entry", ENTRIES)
def test_annotation_of_another_size_is_named_before_anything_runs(data, entry, tmp_path, capsys):
    out = tmp_path / "out"
    main, argv = command(entry, data["bad_davis"], data["bad_youtube"], data["points"], data["sequence"], out)
    code, err = run(main, argv, capsys)
    mask = data["bad_youtube_mask"] if entry == "gis-youtube" else data["bad_davis_mask"]
    assert_one_error(code, err, str(mask), f"{W // 2}x{H // 2}", f"{W}x{H}")
    assert not out.exists()  # no result folder, no .partial or temporary folder


@pytest.mark.parametrize("entry", ENTRIES)
def test_output_that_is_a_file_fails_first(data, entry, tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    main, argv = command(entry, data["davis"], data["youtube"], data["points"], data["sequence"], out)
    code, err = run(main, argv, capsys)
    assert_one_error(code, err, str(out), "is a file")
    assert out.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [out]


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process cannot create files in: a read-only one, or for root (who writes anyway)
    /proc, where no process can create files."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
    elif Path("/proc/self").is_dir():
        yield Path("/proc")
    else:
        pytest.skip("running as root without /proc")


@pytest.mark.parametrize("entry", ENTRIES)
def test_unwritable_output_folder_fails_first(data, entry, unwritable, capsys):
    out = unwritable / "vos-results"
    main, argv = command(entry, data["davis"], data["youtube"], data["points"], data["sequence"], out)
    code, err = run(main, argv, capsys)
    assert_one_error(code, err, str(out), f"cannot write into {unwritable}")
    assert not out.exists()


def test_youtube_vos_loader_checks_annotation_sizes(tmp_path):
    """The YouTube-VOS test loader (BMVOS YTVOS18_val, HMMN -y 18/19, EMVOS/TBD ytvos18-valid)."""
    from common.data.datasets import YouTubeVOS
    from common.runtime.errors import UserError

    root = make_ytvos_sample(tmp_path / "YTVOS", n_videos=1, n_frames=10, height=H, width=W)
    mask = sorted((root / "valid" / "Annotations").glob("*/*.png"))[-1]
    with Image.open(mask) as image:
        image.resize((W * 2, H * 2), Image.NEAREST).save(mask)
    with pytest.raises(UserError) as error:
        YouTubeVOS(root)
    assert f"annotation {mask} is {W * 2}x{H * 2} but frame" in str(error.value) and f"is {W}x{H};" in str(error.value)


# ---------------------------------------------------------------------------------------------- test sets

def test_default_sets_are_the_ones_downloaded(tmp_path, capsys):
    davis = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=H, width=W, n_train=0)
    assert default_sets({"davis": davis, "ytvos": None}) == ["davis16-val", "davis17-val", "davis17-test-dev"]
    test_dev = davis / "ImageSets" / "2017" / "test-dev.txt"
    test_dev.unlink()  # the trainval download alone
    capsys.readouterr()
    assert default_sets({"davis": davis, "ytvos": None}) == ["davis16-val", "davis17-val"]
    assert capsys.readouterr().err == f"notice: davis17-test-dev skipped, {test_dev} not found (request it with " \
                                      f"--sets once it is there)\n"
    assert default_sets({"davis": None, "ytvos": tmp_path}) == ["ytvos18-valid"]
    # no list at all: davis17-val stays, so that its loader says what is missing
    assert default_sets({"davis": tmp_path / "nowhere", "ytvos": None}) == ["davis17-val"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("entry", ["emvos", "tbd"])
def test_requested_set_that_is_missing_fails_before_the_first_video(entry, tmp_path, capsys):
    davis = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_frames=3, height=H, width=W, n_train=0,
                              n_test_dev=0)
    out = tmp_path / "out"
    main = __import__(f"{entry}.run", fromlist=["main"]).main
    code, err = run(main, ["--test", "--davis", str(davis), "--output", str(out),
                           "--sets", "davis17-val", "davis17-test-dev"], capsys)
    assert_one_error(code, err, str(davis / "ImageSets" / "2017" / "test-dev.txt"))
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- notices

@pytest.mark.parametrize("entry", ENTRIES + ("hmmn -g 0",))
def test_no_gpu_notice_is_the_same_everywhere(data, entry, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored afterwards: hmmn's -g sets it
    missing = tmp_path / "missing.pth"
    main, argv = command(entry.split()[0], data["davis"], data["youtube"], data["points"], data["sequence"],
                         tmp_path / "out")
    argv += ["--weights", str(missing)] + entry.split()[1:]  # stops right after the device is chosen
    code, err = run(main, argv, capsys)
    assert_one_error(code, err, str(missing))
    assert err.count(NO_GPU_NOTICE) == 1


def test_device_notice_only_when_a_gpu_was_expected(monkeypatch, capsys):
    from common.runtime.device import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().err == ""
    assert pick_device("cuda:1") == torch.device("cpu")
    assert capsys.readouterr().err == f"{NO_GPU_NOTICE} (--device cuda:1 requested)\n"


# ---------------------------------------------------------------------------------------------- Ctrl-C and pipes

def _child_env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _processes() -> Dict[int, Tuple[int, int]]:
    """pid -> (parent pid, mask of ignored signals), from /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{name}/status").read_text().splitlines()
                          if ":\t" in line)
            table[int(name)] = (int(fields["PPid"]), int(fields["SigIgn"], 16))
        except (OSError, KeyError, ValueError):  # the process ended meanwhile
            continue
    return table


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the process table from /proc")
def test_ctrl_c_during_scoring_workers_prints_one_line(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the J&F worker pool is busy:
    the interrupted message alone, no traceback from the workers or the fork server, status 130."""
    busy = ("import time; from common.runtime.errors import run_cli; from common.evaluation.workers import map_in_workers; "
            "run_cli(lambda argv: map_in_workers(time.sleep, [600, 600], 2, desc='J&F', unit='seq'))")
    # The child's Ctrl-C disposition is set, not inherited: a runner started as a background job of a
    # non-interactive shell ignores SIGINT, and its children would too.
    child = subprocess.Popen([sys.executable, "-c", busy], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=_child_env(), start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        sigint = 1 << (signal.SIGINT - 1)
        deadline = time.monotonic() + 60  # not an assertion: only bounds the wait when the fix is missing
        while time.monotonic() < deadline and child.poll() is None:
            table = _processes()
            helpers = {pid for pid, (parent, _) in table.items() if parent == child.pid}  # fork server, tracker
            workers = [pid for pid, (parent, ignored) in table.items() if parent in helpers and ignored & sigint]
            if len(workers) == 2:  # both workers are up (and sleeping in their task)
                break
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130
    lines = err.splitlines()
    assert lines[-1].startswith("interrupted") and "Traceback" not in err, err
    assert [line for line in lines if line.startswith("interrupted")] == lines[-1:], err


def test_output_into_a_closed_pipe_ends_quietly():
    """`python -m vos.weights list | head`: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        child = subprocess.run([sys.executable, "-m", "vos.weights", "list"], stdout=write_end,
                               stderr=subprocess.PIPE, text=True, env=_child_env(), cwd=REPO, timeout=120)
    finally:
        os.close(write_end)
    assert child.stderr == ""
    assert child.returncode == 128 + signal.SIGPIPE
