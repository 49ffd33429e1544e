"""What every paper's fast mode takes: `Fast<Paper>(model, FastOptions(...))`, one vocabulary for all five.

    --fast                      the paper's fast mode (same weights, same results up to float rounding)
    --precision auto|fp32|bf16|fp16   autocast dtype of the stages the paper found safe in half precision;
                                "auto" is the paper's verified default for the device, "fp32" no autocast
    --compile                   torch.compile the paper's stages

Which stages run under autocast, and the default layout (channels_last) per device, are each paper's finding
and are documented in its `fast.py`; these options only choose among them.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

from common.runtime.errors import UserError

if TYPE_CHECKING:  # imported where a dtype is needed: command lines add these flags before torch is loaded
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPE_NAMES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}  # precision -> torch dtype attribute


def _dtype(precision: str) -> Optional[torch.dtype]:
    import torch

    name = _DTYPE_NAMES[precision]
    return None if name is None else getattr(torch, name)


@dataclass(frozen=True)
class FastOptions:
    """`precision`: one of `PRECISIONS`. `channels_last`: None = the paper's default for the device.
    `compile`: wrap the paper's stages in `torch.compile`."""

    precision: str = "auto"
    channels_last: Optional[bool] = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def autocast_dtype(self, auto: Optional[torch.dtype]) -> Optional[torch.dtype]:
        """The autocast dtype to use: `auto` (the paper's default for the device) unless a precision was chosen;
        None means float32, no autocast."""
        return auto if self.precision == "auto" else _dtype(self.precision)

    def use_channels_last(self, default: bool) -> bool:
        return default if self.channels_last is None else self.channels_last


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """'fp32' / 'bf16' / 'fp16': the vocabulary's word for an autocast dtype (None = float32)."""
    return next(name for name in _DTYPE_NAMES if _dtype(name) == dtype)


def add_fast_arguments(parser: argparse._ActionsContainer, *, fast_help: str) -> None:
    """--fast, --precision and --compile, worded the same in every command line."""
    parser.add_argument("--fast", action="store_true", help=fast_help)
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="with --fast: autocast dtype of the stages the paper keeps safe in half precision "
                             "(default auto: the paper's verified choice for the device; fp32: no autocast)")
    parser.add_argument("--compile", action="store_true", help="with --fast: torch.compile the paper's stages")


def fast_options_from_args(args: argparse.Namespace) -> Optional[FastOptions]:
    """The `FastOptions` of `--fast` (None without it); --precision or --compile without --fast is refused."""
    if not args.fast:
        used = [flag for flag, on in (("--precision", args.precision is not None), ("--compile", args.compile)) if on]
        if used:
            raise UserError(f"{' and '.join(used)} apply to fast mode only; add --fast")
        return None
    return FastOptions(precision=args.precision or "auto", compile=args.compile)


def fast_arguments(options: Optional[FastOptions]) -> List[str]:
    """The command-line flags that `fast_options_from_args` turns back into `options` (for child processes)."""
    if options is None:
        return []
    return ["--fast", "--precision", options.precision] + (["--compile"] if options.compile else [])
