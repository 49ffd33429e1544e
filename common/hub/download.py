"""Downloading one file from Google Drive (gdown) or a plain URL, with every failure as one `UserError`.

Shared by `common.hub.checkpoints` (checkpoints) and `common.hub.results` (the authors' result archives). The
caller downloads into a private staging folder (`staging_folder`) on the same file system as the final
place, checks the file, then renames it into place; so an interrupted, refused or damaged download never
leaves anything that looks like a finished file.

    with staging_folder(cache / "bmvos", fix="set $VOS_WEIGHTS to a writable folder") as staging:
        download(staging / "x.zip", what="results 'bmvos'", hint="Download it by hand from ...",
                 drive_id="1Ikz...")
        reject_empty_or_html(staging / "x.zip", what="results 'bmvos'", hint=...)
        os.replace(staging / "x.zip", final)
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from common.runtime.errors import UserError

DRIVE_PAGE = "https://drive.google.com/file/d/{}/view"

_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<script")


@contextlib.contextmanager
def staging_folder(parent: Path, *, fix: str) -> Iterator[Path]:
    """A new hidden folder in `parent` (created if needed), removed with everything in it on exit.
    `fix` says how to choose another place when `parent` cannot be created."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the cache folder {parent} ({err.strerror}); {fix}") from None
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(tmp: Path, *, what: str, hint: str, drive_id: Optional[str] = None, url: Optional[str] = None,
             offline_hint: str = "") -> None:
    """Download `drive_id` (Google Drive, via gdown) or `url` into `tmp`.

    `what` names the file in messages ("weights 'bmvos-davis'"); `hint` ends every message and says how to
    get the file by hand; `offline_hint` is added when the host could not be reached at all (what to do
    without a network). A refused, unreachable or truncated download raises one `UserError`.
    """
    if drive_id:
        _from_drive(drive_id, tmp, what, hint, offline_hint)
    elif url:
        _from_url(url, tmp, what, hint, offline_hint)
    else:
        raise ValueError("download needs a drive_id or a url")


def _from_drive(drive_id: str, tmp: Path, what: str, hint: str, offline_hint: str) -> None:
    import gdown  # imported here so tests can patch gdown.download, and listing needs no gdown
    import requests

    try:
        result = gdown.download(id=drive_id, output=str(tmp), quiet=False)
    except requests.exceptions.RequestException as err:
        if isinstance(err, requests.exceptions.HTTPError):
            raise UserError(f"Google Drive refused to serve {what} ({err}). {hint}") from None
        raise UserError(f"could not reach Google Drive for {what}: are you offline? "
                        f"({type(err).__name__}) {hint} {offline_hint}".rstrip()) from None
    except gdown.exceptions.FileURLRetrievalError as err:
        reason = " ".join(str(err).split())[:300] or "no reason given"  # gdown's text spans several lines
        raise UserError(f"Google Drive refused to serve {what} (download quota exceeded, "
                        f"or the file is no longer shared): {reason} {hint}") from None
    except gdown.exceptions.DownloadError as err:
        raise UserError(f"downloading {what} from Google Drive failed: {err}. {hint}") from None
    # Older gdown versions report failure by returning None instead of raising.
    if result is None or not tmp.is_file():
        raise UserError(f"Google Drive refused to serve {what} (nothing was downloaded). {hint}")


def _from_url(url: str, tmp: Path, what: str, hint: str, offline_hint: str) -> None:
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "vos-papers"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(tmp, "wb") as out:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced and announced.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=tmp.name, file=sys.stderr) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise UserError(f"the server refused {what}: HTTP {err.code} {err.reason} for {url}. {hint}") from None
    except urllib.error.URLError as err:
        raise UserError(f"could not reach {url} for {what}: are you offline? ({err.reason}) {hint} "
                        f"{offline_hint}".rstrip()) from None
    except http.client.IncompleteRead as err:
        raise UserError(f"the download of {what} broke off after {len(err.partial)} bytes "
                        f"(truncated). {hint}") from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets mid-transfer
        raise UserError(f"the download of {what} from {url} failed: {err}. {hint}") from None
    if total is not None and received != total:
        raise UserError(f"the download of {what} is truncated: got {received} of {total} bytes. {hint}")


def reject_empty_or_html(path: Path, *, what: str, hint: str, kind: str = "file") -> None:
    """Raise one UserError when `path` is empty or an HTML page (Google Drive's answer when its download
    quota is exceeded or the file is not shared) instead of the file itself."""
    if path.stat().st_size == 0:
        raise UserError(f"the file for {what} is empty ({path}). {hint}")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith(_HTML_STARTS):
        raise UserError(f"got an HTML page instead of the {kind} for {what} (Google Drive answers with a page "
                        f"when its download quota is exceeded or the file is not shared). {hint}")
