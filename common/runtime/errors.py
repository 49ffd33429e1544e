"""One clear error for bad input: what is wrong, where, and how to fix it.

Code anywhere in the project raises `UserError` for problems the user can fix (a missing dataset
root, an unknown model name, a checkpoint that does not match). Command-line entry points wrap their
`main` in `run_cli`, which prints the message on one line and exits non-zero, without a traceback.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn, Optional, Sequence


class UserError(Exception):
    """A problem with the user's input, worded so that the message alone says how to fix it."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Run `main(argv)`; turn a `UserError` into `error: ...` on stderr and exit status 2.

    Ctrl-C ends with one line and status 130; a closed output pipe ends silently with status 141."""
    try:
        code = main(argv)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at interpreter exit
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished videos are kept and a rerun resumes after them", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into a reader that stopped (`... | head`): end quietly, as a program killed by SIGPIPE.
        # stdout now points at /dev/null so that the final flush at exit cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    sys.exit(code or 0)
