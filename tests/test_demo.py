"""`make demo` (`vos.demo`): each paper's `run_demo` through the contract, on the generated sample."""
from __future__ import annotations

import pytest

from common.runtime.errors import UserError
from vos import demo


def test_demo_runs_papers_through_their_contract(tmp_path, capsys):
    """Each row is labelled with its weights: TBD's come from `<trained>/tbd/best.pth` (what `make train-sample`
    writes), EMVOS has none there and no official weights in the cache, so it runs seeded."""
    import torch

    from tbd.model import TBD

    trained = tmp_path / "train-sample"
    (trained / "tbd").mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(TBD().state_dict(), trained / "tbd" / "best.pth")
    out_dir = tmp_path / "demo"
    assert demo.main(["--out", str(out_dir), "--papers", "emvos,tbd", "--device", "cpu",
                      "--trained", str(trained)]) == 0
    out = capsys.readouterr().out
    assert f"tbd: weights trained here on generated data, {trained / 'tbd' / 'best.pth'}" in out
    table = out[out.index("Demo results"):].splitlines()
    truth = next(line for line in table if line.startswith("ground truth (metric check)"))
    assert truth.split()[-3:] == ["1.000", "1.000", "1.000"]  # ground truth scored against itself
    for paper, weights in (("emvos", "seeded"), ("tbd", "trained here on generated data")):
        line = next(line for line in table if line.split()[0] == paper)
        assert line.endswith(f"  {weights}"), line
        row = line.split()[1:4]
        assert all(0.0 <= float(value) <= 1.0 for value in row), row
        assert (out_dir / paper / "davis17-val").is_dir() and (out_dir / paper / "ytvos18-valid.zip").is_file()


def test_unknown_paper_is_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="unknown paper"):
        demo.main(["--out", str(tmp_path / "d"), "--papers", "emvos,nope"])
    assert not (tmp_path / "d").exists()
