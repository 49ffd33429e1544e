"""What the `<paper>.reproduce` commands share: their common arguments and the ours-vs-published table.

The published numbers, the column titles and what each paper runs stay in the paper packages.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from common.runtime.device import add_device_argument

# A table cell: a score (printed with one decimal), text as given, or None for "no number" ('-').
Cell = Union[float, str, None]


def reproduce_parser(paper: str, doc: str, *, ytvos: bool = True) -> argparse.ArgumentParser:
    """The parser of `python -m <paper>.reproduce` with the arguments every reproduce command takes:
    --davis, --ytvos (YouTube-VOS 2018; `ytvos=False` for papers that name their own), --output
    (default outputs/<paper>), --test-dev and --device. The paper adds its own arguments after these."""
    parser = argparse.ArgumentParser(prog=f"python -m {paper}.reproduce", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS 2017 root (JPEGImages/, Annotations/)")
    if ytvos:
        parser.add_argument("--ytvos", type=Path, default=None,
                            help="YouTube-VOS 2018 root: also write its submission")
    parser.add_argument("--output", type=Path, default=Path("outputs") / paper, help="results folder")
    parser.add_argument("--test-dev", action="store_true", help="also DAVIS 2017 test-dev (submission zip)")
    add_device_argument(parser)
    return parser


def gap(ours: Optional[float], published: float) -> Optional[str]:
    """ours - published with its sign ('+0.3', '-1.2'), or None when there is no score of ours."""
    return None if ours is None else f"{ours - published:+.1f}"


def text_table(header: Sequence[str], rows: Iterable[Sequence[Cell]], *, name_width: int) -> str:
    """A plain-text table: the first column (benchmark names) left-aligned in `name_width` characters, every
    other column right-aligned in max(8, len(title) + 2); scores with one decimal, None as '-'."""
    widths = [max(8, len(title) + 2) for title in header[1:]]

    def line(cells: Sequence[Cell]) -> str:
        name, *rest = cells
        return f"{name:<{name_width}}" + "".join(_cell(value, width) for value, width in zip(rest, widths))

    return "\n".join([line(header), *(line(row) for row in rows)])


def _cell(value: Cell, width: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, str):
        return f"{value:>{width}}"
    return f"{value:>{width}.1f}"
