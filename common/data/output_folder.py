"""Results folders: checked before any work starts, and small files written into them atomically.

Entry points call `check_output_folder` next to their dataset checks, before the weights load, so a
read-only or mistyped `--output` fails at once with one line instead of a `PermissionError` traceback
after the first video. `write_text_atomic` writes a table or a summary so that a reader (or an
interruption) never sees half of it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common.data.paths import PathLike
from common.runtime.errors import UserError


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


def write_temp(path: Path, text: str) -> Path:
    """`text` in a new hidden file next to `path` (same filesystem, so renaming it onto `path` is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_text_atomic(path: PathLike, text: str) -> None:
    """Replace `path` with `text` in one step: the old content or the new one, never a part."""
    path = Path(path)
    os.replace(write_temp(path, text), path)
