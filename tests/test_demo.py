"""`make demo` (`vos.demo`): each paper's `run_demo` through the contract, on the generated sample."""
from __future__ import annotations

import pytest

from common.runtime.errors import UserError
from vos import demo


def test_demo_runs_papers_through_their_contract(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--papers", "emvos,tbd", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Demo results"):].splitlines()
    truth = next(line for line in table if line.startswith("ground truth (metric check)"))
    assert truth.split()[-3:] == ["1.000", "1.000", "1.000"]  # ground truth scored against itself
    for paper in ("emvos", "tbd"):
        row = next(line for line in table if line.split()[0] == paper).split()[1:]
        assert len(row) == 3 and all(0.0 <= float(value) <= 1.0 for value in row), row
        assert (tmp_path / paper / "davis17-val").is_dir() and (tmp_path / paper / "ytvos18-valid.zip").is_file()


def test_unknown_paper_is_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="unknown paper"):
        demo.main(["--out", str(tmp_path / "d"), "--papers", "emvos,nope"])
    assert not (tmp_path / "d").exists()
