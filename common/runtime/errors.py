"""One clear error for bad input: what is wrong, where, and how to fix it.

Code anywhere in the project raises `UserError` for problems the user can fix (a missing dataset
root, an unknown model name, a checkpoint that does not match). Command-line entry points wrap their
`main` in `run_cli`, which prints the message on one line and exits non-zero, without a traceback.

Ctrl-C ends with one `interrupted` line that says what is true for the command at that moment: a
command declares it with `on_interrupt` once it knows (e.g. "finished videos are kept and a rerun
resumes after them"); without a declaration the line says only that the command was interrupted.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn, Optional, Sequence

# Set for a child process whose parent command reports the interruption itself (`vos.compare` runs
# `vos.segment` per method): the child then ends with status 130 silently, so Ctrl-C prints one line.
PARENT_REPORTS_INTERRUPT = "VOS_PARENT_REPORTS_INTERRUPT"

RESUMES_AFTER_VIDEOS = "finished videos are kept and a rerun resumes after them"

_interrupt_note: Optional[str] = None


class UserError(Exception):
    """A problem with the user's input, worded so that the message alone says how to fix it."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def on_interrupt(note: Optional[str]) -> None:
    """What Ctrl-C leaves behind from now on, printed after `interrupted; ` (None: nothing to add)."""
    global _interrupt_note
    _interrupt_note = note


def interrupted_line() -> str:
    return "interrupted" + (f"; {_interrupt_note}" if _interrupt_note else "")


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Run `main(argv)`; turn a `UserError` into `error: ...` on stderr and exit status 2.

    Ctrl-C ends with one line and status 130; a closed output pipe ends silently with status 141."""
    on_interrupt(None)
    try:
        code = main(argv)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at interpreter exit
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if not os.environ.get(PARENT_REPORTS_INTERRUPT):
            print(interrupted_line(), file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        end_on_broken_pipe()
    sys.exit(code or 0)


def end_on_broken_pipe() -> NoReturn:
    """Output piped into a reader that stopped (`... | head`): end quietly, as a program killed by SIGPIPE.
    stdout now points at /dev/null so that the final flush at exit cannot raise again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)
