"""Every command in README.md's ```bash blocks runs as written, on the synthetic sample.

Each command is matched (longest prefix) against one of two tables: RUN, the flags it gets on the sample
(the data paths are replaced by the sample's, weights are seeded, sizes stay native so the run is short,
but it is a real run of the entry point, checked for exit status 0), or NOT_RUN, the reason it cannot run
here. A README command in neither table fails the test, so a new command is one new table entry and the
README cannot drift from the code. The commands run in README order in one working folder, so a later
command can read what an earlier one wrote (the evaluation example scores TBD's result folder).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

SEEDED = ["--weights", "seeded"]
CPU = ["--device", "cpu"]

# README command prefix -> flags appended for the run on the sample ({points}: the YouTube-IVOS click files).
RUN: Dict[str, List[str]] = {
    "python -m vos.weights list": [],
    "python -m common.data.synthetic": [],
    "python -m bmvos.main_runfile": [*SEEDED, "--native-size", "--eval-workers", "1", *CPU],
    "python -m emvos.run --test": [*SEEDED, "--no-resize", *CPU],
    "python -m tbd.run --test": [*SEEDED, "--no-resize", *CPU],
    "python -m hmmn.eval_davis": [*SEEDED, *CPU],
    "python -m gis.ivos_main_davis": [*SEEDED, "--metric", "J_AND_F", "--max-interactions", "1", *CPU],
    "python -m gis.ivos_main_youtube": [*SEEDED, "--points", "5", "--points-dir", "{points}", "--short-side", "80",
                                        *CPU],
    # the sample's own train split and click files (`python -m common.data.synthetic sample` above)
    "python -m gis.ivos_main_youtube --youtube sample/YouTubeVOS": [*CPU],
    "python -m common.evaluation.evaluate": [],
    "python -m vos.segment": [*CPU],
    "python -m vos.compare": [*CPU],
    "python -m vos.precomputed list": [],
    "python -m common.evaluation.agree": [],
}

# README command prefix -> why it is not run here.
NOT_RUN: Dict[str, str] = {
    "make setup": "creates the environment these tests run in",
    "make test": "the test suite itself",
    "python -m vos.weights fetch": "downloads official weights (no network in CI; tests/test_weights.py "
                                      "checks the download code against a local server)",
    "python -m bmvos.train": "training on full data (tests/test_bmvos_train.py trains on the sample)",
    "python -m emvos.run --train": "training on full data (tests/test_emvos_train.py trains on the sample)",
    "python -m tbd.run --train": "training on full data (tests/test_training.py covers the trainer)",
    "torchrun": "multi-GPU / multi-node launches (tests/test_distributed.py runs 2-process torchrun on the CPU)",
    "make gui": "a server that runs until stopped (tests/test_gis_app_browser.py drives the same app in Chromium)",
    "python -m gis.app": "a server that runs until stopped (tests/test_gis_app.py drives its API, "
                         "tests/test_gis_app_browser.py its page)",
    "python -m vos.precomputed fetch": "downloads the authors' results (tests/test_precomputed.py fetches fake "
                                          "archives from a local server)",
    "make verify-hmmn": "downloads the authors' results and needs DAVIS (tests/test_verify.py runs vos.verify "
                        "on a fake archive)",
}


def readme_commands(text: str) -> List[str]:
    """The commands of the ```bash blocks: continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(" ".join(line.split()))
    return commands


def classify(command: str) -> Tuple[str, Optional[str]]:
    """('run', prefix) or ('skip', prefix) by the longest matching prefix; ('unknown', None) if none."""
    matches = [(len(p), "run", p) for p in RUN if _starts(command, p)]
    matches += [(len(p), "skip", p) for p in NOT_RUN if _starts(command, p)]
    if not matches:
        return "unknown", None
    _, kind, prefix = max(matches)
    return kind, prefix


def _starts(command: str, prefix: str) -> bool:
    return command == prefix or command.startswith(prefix + " ")


def test_every_readme_command_is_classified():
    commands = readme_commands(README.read_text())
    assert commands, "no ```bash commands found in README.md"
    unknown = [c for c in commands if classify(c)[0] == "unknown"]
    assert not unknown, ("README commands neither run nor listed with a reason in tests/test_readme_commands.py "
                         f"(add them to RUN or NOT_RUN): {unknown}")
    stale = sorted((set(RUN) | set(NOT_RUN)) - {classify(c)[1] for c in commands})
    assert not stale, f"table entries no README command uses (remove them): {stale}"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Dict[str, Path]:
    """The README's data folders, made from a tiny synthetic sample (80x128: HMMN's smallest frame)."""
    from common.data.synthetic import make_sample
    from gis.youtube_session import write_synthetic_points

    root = tmp_path_factory.mktemp("readme")
    paths = make_sample(root / "sample", n_videos=1, n_frames=3, height=80, width=128, ytvos_frames=6,
                        coco_images=1)
    ivos = root / "YouTubeVOS2019"  # YouTube-IVOS reads train/ of YouTube-VOS 2019: the sample's valid videos
    shutil.copytree(paths["ytvos"] / "valid" / "JPEGImages", ivos / "train" / "JPEGImages")
    shutil.copytree(paths["ytvos"] / "valid_gt" / "Annotations", ivos / "train" / "Annotations")
    videos = sorted(p.name for p in (ivos / "train" / "JPEGImages").iterdir())
    points = write_synthetic_points(ivos, root / "points", videos, n_points=(5,))
    return {"data/DAVIS": paths["davis"], "data/YTVOS18": paths["ytvos"], "data/COCO": paths["coco"],
            "data/YouTubeVOS2019": ivos, "{points}": points, "work": root / "work"}


def as_run_on_sample(command: str, prefix: str, sample: Dict[str, Path]) -> List[str]:
    """The command's argv with the README's data folders replaced by the sample's and its /tmp/ paths moved
    into the test's working folder (the commands that make and read them there stay consistent)."""
    argv = shlex.split(command) + RUN[prefix]
    scratch = str(sample["work"] / "tmp") + "/"
    argv = [scratch + arg[len("/tmp/"):] if arg.startswith("/tmp/") else arg for arg in argv]
    argv = [str(sample.get(arg, arg)) for arg in argv]
    assert argv[0] == "python", command
    return [sys.executable, *argv[1:]]


def test_readme_commands_run_on_the_sample(sample):
    work = sample["work"]
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "VOS_WEIGHTS": str(work / "weights-cache")}
    ran = 0
    for command in readme_commands(README.read_text()):
        kind, prefix = classify(command)
        if kind != "run":
            continue
        argv = as_run_on_sample(command, prefix, sample)
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n-> {' '.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        if "--weights" in argv and "seeded" in argv:
            assert "not the paper's" in done.stdout + done.stderr, command  # the one notice about seeded weights
        ran += 1
    assert ran >= len(RUN)
