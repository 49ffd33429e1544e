"""`make verify-<paper>` (vos.verify) offline: a fake BMVOS archive of the generated sample's masks."""
from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest

import bmvos.reproduce
from common.data.palette import read_label_png, write_label_png
from common.data.synthetic import make_davis_sample
from common.evaluation.evaluate import evaluate
from common.hub.results import RESULTS_REGISTRY as RESULTS
from common.runtime.errors import run_cli
from tests.test_precomputed import cache, fake_drive  # noqa: F401  (cache is a fixture)
from vos import verify


def test_published_numbers_and_archives_are_the_papers_own():
    assert verify.published_jf("bmvos") == {"davis16-val": 82.2, "davis17-val": 72.7}
    assert verify.archives_for("hmmn", ["davis17-val"]) == ["hmmn-davis17-val"]
    assert verify.archives_for("tbd", ["davis16-val", "ytvos18-valid"]) == ["tbd"]


@pytest.fixture
def sample(tmp_path, cache, monkeypatch):  # noqa: F811
    """DAVIS sample; 'theirs' = its ground truth in a fake BMVOS archive; 'ours' = the same with one frame off."""
    davis = make_davis_sample(tmp_path / "DAVIS", n_videos=2, n_frames=4, height=32, width=40)
    gt = davis / "Annotations" / "480p"
    seqs = ("synth-val-00", "synth-val-01")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for folder in ("BMVOS/DAVIS16_val", "BMVOS/DAVIS17_val"):
            for seq in seqs:
                for png in sorted((gt / seq).glob("*.png")):
                    zf.write(png, f"{folder}/{seq}/{png.name}")
    fake_drive(monkeypatch, {RESULTS["bmvos"].drive_ids[0]: buffer.getvalue()})
    out = tmp_path / "outputs" / "bmvos"
    for set_name in ("davis16-val", "davis17-val"):
        for seq in seqs:
            shutil.copytree(gt / seq, out / set_name / seq)
    off = out / "davis17-val" / "synth-val-01" / "00001.png"
    write_label_png(off, np.roll(read_label_png(off), 2, axis=1))
    return davis, out


def run(argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(verify.main, argv)
    return exit_info.value.code


def test_verify_scores_theirs_against_published_and_ours_against_theirs(sample, cache, capsys,  # noqa: F811
                                                                         monkeypatch):
    davis, out = sample
    assert run(["bmvos", "--davis", str(davis), "--output", str(out), "--no-run"]) == 1  # 100.0 is not 82.2
    printed = capsys.readouterr()
    assert "MISMATCH" in printed.err
    lines = printed.out.splitlines()
    assert any(line.split() == ["davis16-val", "100.0", "82.2", "MISMATCH"] for line in lines), printed.out
    assert "bit-identical frames 8/8 (100.0%)" in printed.out  # DAVIS 2016: ours is theirs
    assert "bit-identical frames 7/8 (87.5%)" in printed.out  # DAVIS 2017: one frame moved
    assert (out / "davis17-val" / "agreement.csv").is_file()

    # Published numbers equal to the evaluator's score of their masks, to the printed precision: a match.
    theirs = cache / "precomputed" / "bmvos" / "BMVOS" / "DAVIS16_val"
    score = 100 * evaluate(davis, theirs, "val", 2016, progress=False).global_row["J&F-Mean"]
    monkeypatch.setattr(bmvos.reproduce, "PUBLISHED", {"davis16-val": round(score, 1)})
    assert run(["bmvos", "--davis", str(davis), "--output", str(out), "--no-run", "--sets", "davis16-val"]) == 0
    assert any(line.split()[-1:] == ["match"] for line in capsys.readouterr().out.splitlines())


def test_missing_results_of_ours_run_the_reproduction(sample, capsys, monkeypatch):
    davis, out = sample
    shutil.rmtree(out / "davis16-val" / "synth-val-00")
    commands = []

    def fake_reproduction(command):
        commands.append(command[1:])
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(verify.subprocess, "run", fake_reproduction)
    assert run(["bmvos", "--davis", str(davis), "--output", str(out), "--device", "cpu",
                "--", "--native-size"]) == 1
    assert commands == [["-m", "bmvos.reproduce", "--davis", str(davis), "--output", str(out),
                         "--device", "cpu", "--native-size"]]
    assert f"no complete results of ours at {out / 'davis16-val'}" in capsys.readouterr().out


def test_bad_input_is_one_line_before_any_download(tmp_path, cache, capsys, monkeypatch):  # noqa: F811
    calls = fake_drive(monkeypatch, {})
    assert run(["bmvos", "--davis", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: DAVIS root not found")
    assert calls == []
    (tmp_path / "DAVIS").mkdir()
    assert run(["bmvos", "--davis", str(tmp_path / "DAVIS")]) == 2
    assert "ImageSets/2016/val.txt" in capsys.readouterr().err and calls == []
