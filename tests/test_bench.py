"""`make bench` (vos.bench): the table, its JSON and the modes each paper offers. Speeds themselves are
never asserted (they belong to the machine); only that the run measures what the table says."""
from __future__ import annotations

import json

import pytest

from common.runtime.errors import UserError
from vos import bench


def test_speedup_is_against_the_same_methods_faithful_row():
    rows = [{"method": "a", "mode": "faithful", "ms_per_frame": 30.0},
            {"method": "a", "mode": "fast", "ms_per_frame": 10.0},
            {"method": "b", "mode": "fast", "ms_per_frame": 5.0},  # no faithful row: no speed-up
            {"method": "g", "mode": "faithful", "seconds_per_round": 4.0},
            {"method": "g", "mode": "compiled", "seconds_per_round": 1.0}]
    bench.add_speedups(rows)
    assert [r.get("speedup") for r in rows] == [1.0, 3.0, None, 1.0, 4.0]
    table = bench.format_rows(rows).splitlines()
    assert table[0].split() == ["method", "mode", "frames/s", "ms/frame", "encoder", "s/round", "speed-up",
                                "peak", "MiB"]
    assert table[2].split() == ["a", "fast", "-", "10.0", "-", "-", "3.00", "-"]


def test_unknown_mode_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--modes takes"):
        bench.main(["--modes", "fastest", "--json", str(tmp_path / "b.json")])


def test_small_run_writes_the_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--papers", "tbd", "--height", "64", "--width", "96", "--frames", "3", "--runs", "1",
                       "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["header"]) == {"device", "machine", "python", "torch"}
    rows = {(r["method"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {("tbd", "faithful"), ("tbd", "fast"), ("J&F evaluator", "-")}
    for mode in ("faithful", "fast"):
        row = rows[("tbd", mode)]
        assert row["frames"] == 3 and row["fps"] == pytest.approx(1000 / row["ms_per_frame"])
        assert 0 < row["encoder_ms_per_frame"] < row["ms_per_frame"]  # the encoder hooks saw the encoder
        assert row["peak_memory_mib"] > 0
    assert rows[("tbd", "fast")]["speedup"] == pytest.approx(
        rows[("tbd", "faithful")]["ms_per_frame"] / rows[("tbd", "fast")]["ms_per_frame"])
    assert rows[("J&F evaluator", "-")]["fps"] > 0
    printed = capsys.readouterr().out
    assert "tbd" in printed and "speed-up" in printed and str(out) in printed
