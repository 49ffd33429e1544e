"""Each tab's work on disk, so that a reload, a dead browser or a server restart loses nothing.

One JSON file per session (`TabSession.record()`), replaced atomically after every change; the
evaluation removes it when the sequence is written to the CSV (Satisfied).
"""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Dict

from common.data.output_folder import write_text_atomic

log = logging.getLogger("gis.app")
SID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class SessionStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.lock = threading.Lock()  # the worker and the event loop both save

    def path(self, sid: str) -> Path:
        if not SID.fullmatch(sid):
            raise ValueError(f"bad session id {sid!r}")
        return self.folder / f"{sid}.json"

    def save(self, session) -> None:
        with self.lock:  # the record is taken under the lock, so an older one never overwrites a newer one
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path(session.sid), json.dumps(session.record()))

    def delete(self, sid: str) -> None:
        with self.lock:
            self.path(sid).unlink(missing_ok=True)

    def load_all(self) -> Dict[str, dict]:
        """The saved records by session id; an unreadable file is reported and skipped (kept on disk)."""
        records = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or record.get("sid") != path.stem:
                    raise ValueError("not a session record")
            except (OSError, ValueError) as err:
                log.warning("skipping the saved session %s: %s", path, err)
                continue
            records[path.stem] = record
        return records
