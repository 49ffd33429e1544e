"""The one path type the file-reading and file-writing modules accept."""
from pathlib import Path
from typing import Union

PathLike = Union[str, Path]
