"""common.hub.results without internet: small fake archives served by a patched gdown or a local server."""
from __future__ import annotations

import dataclasses
import io
import re
import tarfile
import zipfile
from pathlib import Path

import gdown
import numpy as np
import pytest

import gis.checkpoints
from common.data.palette import write_label_png
from common.hub import results as precomputed
from common.hub.results import DAVIS16_VAL, DAVIS17_VAL, RESULTS_REGISTRY as RESULTS, fetch
from common.runtime.errors import UserError, run_cli
from tests.test_weights import HTML, cache, files_in, server  # noqa: F401  (cache, server: fixtures)
from vos import precomputed as precomputed_cli

# Every pre-computed-results link of the official READMEs (the seeds of this project).
SEED_LINKS = {
    "bmvos": "1IkUGkIH86ERpAPQeJNckgLdwQ8yBCNgk",
    "emvos": "1GWn7csEX4C8PJWcnC1ykS8IYobloQaSh",
    "tbd": "1d-KIWYBxbU-VHmLqvCbyLMz_sRExt8Ir",
    "hmmn-davis16-val": "1s1qEUnLP8eEt64mxDv4VieZW0cEW09_u",
    "hmmn-davis17-val": "1ZNbdME0SG5WIn1BoBnfQ9IkEFt4xmLA6",
    "hmmn-davis17-test-dev": "1Fr50S37X0erJBEfWhNmU06tKIgSZvy3P",
    "hmmn-ytvos18-valid": "1dx3pbKQlp-80eekgp3i1leKXv_Jqv2JJ",
    "hmmn-ytvos19-valid": "10yu-HqXCQLQlLt0ZIlwfQ4cKW71OzndQ",
}


def png_bytes(labels: np.ndarray, tmp: Path) -> bytes:
    write_label_png(tmp / "m.png", labels)
    return (tmp / "m.png").read_bytes()


def results_zip(tmp: Path, folders: dict, extra: dict = None) -> bytes:
    """A zip holding `folders[path] = [sequence, ...]`, two 4x6 masks per sequence, plus `extra` members."""
    png = png_bytes(np.eye(4, 6, dtype=np.uint8), tmp)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for folder, sequences in folders.items():
            for seq in sequences:
                for t in range(2):
                    zf.writestr(f"{folder}/{seq}/{t:05d}.png", png)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def damaged(archive: bytes) -> bytes:
    """`archive` with one byte of its first member's data changed: the zip still opens, the CRC fails."""
    at = archive.index(b"IHDR") + 6
    return archive[:at] + bytes([archive[at] ^ 0xFF]) + archive[at + 1:]


def fake_drive(monkeypatch, answers: dict):
    """gdown.download serving `answers[drive_id]` (bytes, or an exception to raise); records the ids asked."""
    calls = []

    def download(url=None, output=None, quiet=False, id=None, **kwargs):
        calls.append(id)
        answer = answers.get(id, gdown.exceptions.FileURLRetrievalError("Cannot retrieve the public link"))
        if isinstance(answer, Exception):
            raise answer
        Path(output).write_bytes(answer)
        return output

    monkeypatch.setattr(gdown, "download", download)
    return calls


def test_registry_names_every_seed_link_with_its_source():
    for name, drive_id in SEED_LINKS.items():
        assert drive_id in RESULTS[name].drive_ids, name
    for spec in RESULTS:
        assert spec.paper in {"bmvos", "emvos", "tbd", "hmmn", "gis"} and spec.source and spec.description
        assert bool(spec.sets) != bool(spec.summary_files)
        assert set(spec.sets) <= set(precomputed.SETS)
        assert all(re.fullmatch(r"[\w-]{25,}", i) for i in spec.drive_ids)
        assert spec.page_urls and all(u.startswith("https://") for u in spec.page_urls)
    assert RESULTS["gis"].url.endswith(gis.checkpoints.GIS_COMMIT)
    assert set(DAVIS16_VAL) < set(DAVIS17_VAL) and (len(DAVIS16_VAL), len(DAVIS17_VAL)) == (20, 30)


def test_fetch_extracts_checks_layout_then_hits_cache(cache, monkeypatch, tmp_path):
    spec = RESULTS["hmmn-davis17-val"]
    archive = results_zip(tmp_path, {"HMMN/DAVIS17_val": DAVIS17_VAL})
    calls = fake_drive(monkeypatch, {spec.drive_ids[0]: archive})
    layout = fetch("hmmn-davis17-val")
    root = cache / "precomputed" / "hmmn-davis17-val"
    assert layout.root == root and layout.sets == {"davis17-val": root / "HMMN" / "DAVIS17_val"}
    assert (root / "HMMN" / "DAVIS17_val" / "india" / "00001.png").is_file()
    assert not [p for p in (cache / "precomputed").iterdir() if p.name.startswith(".")]  # staging is gone
    assert fetch("hmmn-davis17-val").sets == layout.sets and calls == [spec.drive_ids[0]]  # no new download


def test_older_readme_link_is_tried_when_the_current_one_is_refused(cache, monkeypatch, tmp_path):
    spec = RESULTS["hmmn-davis16-val"]
    calls = fake_drive(monkeypatch, {spec.drive_ids[1]: results_zip(tmp_path, {"res": DAVIS16_VAL})})
    assert set(fetch("hmmn-davis16-val").sets) == {"davis16-val"}
    assert calls == list(spec.drive_ids)


def test_unconfirmed_multi_set_archive_reports_what_it_holds(cache, monkeypatch, tmp_path):
    spec = RESULTS["bmvos"]
    # DAVIS 2016 results holding more than the 20 val sequences: taken because the path names 2016
    fake_drive(monkeypatch, {spec.drive_ids[0]: results_zip(tmp_path, {"BMVOS/DAVIS17": DAVIS17_VAL,
                                                                       "BMVOS/DAVIS2016": DAVIS17_VAL})})
    layout = fetch("bmvos")
    root = cache / "precomputed" / "bmvos" / "BMVOS"
    assert layout.sets == {"davis16-val": root / "DAVIS2016", "davis17-val": root / "DAVIS17"}
    assert layout.missing == ("davis17-test-dev", "ytvos18-valid")
    assert "not in the archive: davis17-test-dev, ytvos18-valid" in layout.report()


def test_a_superset_without_the_year_in_its_path_is_not_taken(cache, monkeypatch, tmp_path):
    fake_drive(monkeypatch, {RESULTS["hmmn-davis16-val"].drive_ids[0]: results_zip(tmp_path, {"res": DAVIS17_VAL})})
    with pytest.raises(UserError, match=r"no result folder for davis16-val .* holds res \(30 sequences\); "
                                        r"closest is res: extra bike-packing"):
        fetch("hmmn-davis16-val")


@pytest.mark.parametrize("case, message", [
    ("a sequence missing", r"differ from the expected layout: no result folder for davis17-val .*"
                           r"closest is HMMN/val: missing india"),
    ("damaged", r"archive of results 'hmmn-davis17-val' is damaged"),
    ("not an archive", r"not a zip or tar archive"),
    ("html", r"HTML page instead of the archive"),
    ("path traversal", r"'\.\./evil.png', a path outside its folder"),
    ("refused", r"Google Drive refused .*drive.google.com/file/d/1uDx8"),
])
def test_bad_archives_leave_nothing(cache, monkeypatch, tmp_path, case, message):
    spec = RESULTS["hmmn-davis17-val"]
    good = results_zip(tmp_path, {"HMMN/val": DAVIS17_VAL})
    body = {
        "a sequence missing": results_zip(tmp_path, {"HMMN/val": [s for s in DAVIS17_VAL if s != "india"]}),
        "damaged": damaged(good),
        "not an archive": b"\x00\x01 not an archive" * 10,
        "html": HTML,
        "path traversal": results_zip(tmp_path, {"HMMN/val": DAVIS17_VAL}, {"../evil.png": b"x"}),
    }.get(case)
    fake_drive(monkeypatch, {} if body is None else {spec.drive_ids[0]: body})
    with pytest.raises(UserError, match=message):
        fetch("hmmn-davis17-val")
    assert files_in(cache) == []
    assert not (tmp_path / "evil.png").exists() and not (cache / "evil.png").exists()


def test_tar_archives_and_links(cache, monkeypatch, tmp_path):
    spec = RESULTS["hmmn-davis16-val"]
    png = png_bytes(np.ones((4, 6), np.uint8), tmp_path)

    def tar(with_link: bool) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
            for seq in DAVIS16_VAL:
                info = tarfile.TarInfo(f"out/{seq}/00000.png")
                info.size = len(png)
                tf.addfile(info, io.BytesIO(png))
            if with_link:
                link = tarfile.TarInfo("out/blackswan/00001.png")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tf.addfile(link)
        return buffer.getvalue()

    fake_drive(monkeypatch, {spec.drive_ids[0]: tar(with_link=True)})
    with pytest.raises(UserError, match="not a plain file or folder"):
        fetch("hmmn-davis16-val")
    assert files_in(cache) == []
    fake_drive(monkeypatch, {spec.drive_ids[0]: tar(with_link=False)})
    assert fetch("hmmn-davis16-val").sets["davis16-val"].name == "out"


def test_gis_summaries_from_a_local_server(cache, monkeypatch, tmp_path, server):  # noqa: F811
    top = f"GIS-RAmap-{gis.checkpoints.GIS_COMMIT}"
    files = {f"{top}/{name}": b"{}" for name in RESULTS["gis"].summary_files}
    server.routes["/gis.zip"] = (200, results_zip(tmp_path, {}, files), None)
    monkeypatch.setitem(RESULTS, "gis", dataclasses.replace(RESULTS["gis"], url=server.url("/gis.zip")))
    layout = fetch("gis")
    assert (layout.root / top / RESULTS["gis"].summary_files[0]).is_file()

    del files[f"{top}/{RESULTS['gis'].summary_files[-1]}"]
    server.routes["/gis.zip"] = (200, results_zip(tmp_path, {}, files), None)
    with pytest.raises(UserError, match=r"1 of 17 summary files are missing, first .*summary_total.json"):
        fetch("gis", force=True)
    assert (layout.root / top / RESULTS["gis"].summary_files[-1]).is_file()  # the good copy is kept


def test_cli(cache, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(precomputed_cli.main, ["list"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in RESULTS.names()) and "source: Hongje/HMMN README" in out
    with pytest.raises(SystemExit) as exit_info:
        run_cli(precomputed_cli.main, ["fetch", "hmmn-davis16-val", "nope"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: unknown results 'nope'; known: " + ", ".join(sorted(RESULTS.names())))
