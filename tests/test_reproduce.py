"""common.inference.reproduce: the shared arguments and table of the `<paper>.reproduce` commands."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.inference.reproduce import gap, reproduce_parser, text_table


def test_text_table_aligns_scores_text_and_missing_cells():
    rows = [("davis17-val", 79.54, 80.0, gap(79.54, 80.0), 75.2),
            ("ytvos18-valid", "server", 80.5, gap(None, 80.5), 77.8)]
    assert text_table(("benchmark", "ours", "paper", "diff", "no-COCO"), rows, name_width=16).splitlines() == [
        "benchmark           ours   paper    diff  no-COCO",
        "davis17-val         79.5    80.0    -0.5     75.2",
        "ytvos18-valid     server    80.5       -     77.8",
    ]


def test_reproduce_parser_shared_arguments(capsys):
    args = reproduce_parser("tbd", "doc").parse_args(["--davis", "d", "--test-dev", "--device", "cpu"])
    assert (args.davis, args.ytvos, args.output, args.test_dev, args.device) == (
        Path("d"), None, Path("outputs/tbd"), True, "cpu")
    assert not hasattr(reproduce_parser("hmmn", "doc", ytvos=False).parse_args(["--davis", "d"]), "ytvos")
    with pytest.raises(SystemExit):
        reproduce_parser("tbd", "doc").parse_args([])  # --davis is required
    assert "--davis" in capsys.readouterr().err
