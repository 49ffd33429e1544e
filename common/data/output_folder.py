"""Results folders: checked before any work starts, and small files written into them atomically.

Entry points call `check_output_folder` next to their dataset checks, before the weights load, so a
read-only or mistyped `--output` fails at once with one line instead of a `PermissionError` traceback
after the first video. `write_text_atomic` writes a table or a summary so that a reader (or an
interruption) never sees half of it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Tuple

from common.data.paths import PathLike
from common.runtime.errors import UserError, on_interrupt


def _nearest_existing(path: Path) -> Path:
    """`path` itself or the closest ancestor that exists: the folder the results will be created in."""
    current = path
    while True:
        try:
            if current.exists():
                return current
        except OSError:  # e.g. an ancestor without search permission
            pass
        if current.parent == current:
            return current
        current = current.parent


def check_output_folder(path: PathLike, option: str = "--output") -> None:
    """Fail with a `UserError` unless results can be written under `path` (existing or still to be created).

    Writing is tried for real (an unnamed temporary file, removed at once) rather than judged from permission
    bits, which miss read-only mounts and ACLs. Nothing is created: a later error leaves no empty folder.
    """
    path = Path(path)
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        where = "is a file" if base == path.absolute() else f"is below {base}, which is a file"
        raise UserError(f"{option} {path} {where}, not a folder; pass a folder path (it is created if missing)")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise UserError(f"{option} {path}: cannot write into {base} ({err.strerror or err}); choose a writable "
                        f"folder or fix its permissions") from None


def check_checkpoint_folder(path: PathLike, option: str = "--output-dir") -> None:
    """Before a training run: its checkpoint folder can be written (`check_output_folder`), and Ctrl-C from now on
    says what is kept and how to continue."""
    check_output_folder(path, option)
    on_interrupt(f"training stopped; the checkpoints in {path} are kept, and the same command with --resume "
                 f"continues from the last resume checkpoint (<stage>_last.pth)")


def current_umask() -> int:
    """The process's umask (read from /proc where it can be; else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file_beside(path: Path) -> Tuple[int, Path]:
    """(open descriptor, path) of a new hidden file next to `path`, on the same filesystem so that renaming it
    onto `path` is atomic. It gets the mode a plain `open(path, "w")` gives (0666 less the umask, typically
    0644): `mkstemp`'s private 0600 would survive the rename and make results unreadable to others."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, Path(name)


def write_temp(path: Path, text: str) -> Path:
    """`text` in a new hidden file next to `path` (`temp_file_beside`), for a later `os.replace` onto `path`."""
    fd, temp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_file_atomic(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Replace `path` with what `write` puts into a binary file, in one step (a checkpoint, a PNG)."""
    path = Path(path)
    fd, temp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    """Replace `path` with `text` in one step: the old content or the new one, never a part."""
    path = Path(path)
    os.replace(write_temp(path, text), path)
