"""common.hub.checkpoints without internet: a local HTTP server on 127.0.0.1 and a patched gdown.download."""
from __future__ import annotations

import hashlib
import http.server
import io
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import gdown
import pytest
import requests
import torch
from torch import nn

from common.hub import checkpoints as weights
from common.hub.checkpoints import (CHECKPOINT_REGISTRY, WeightSpec, build_with_weights, cache_dir, cached_path, fetch,
                                    is_seeded, load_into, load_state_dict, official_or_seeded, seeded_init,
                                    seeded_notice)
from common.runtime.errors import UserError, run_cli
from vos import weights as weights_cli
from vos.papers import PAPERS

REQUIRED = {"bmvos-davis", "bmvos-ytvos", "emvos-coco_davis", "emvos-coco_ytvos", "tbd-davis", "tbd-ytvos",
            "hmmn", "gis-davis", "gis-youtube"}
HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>Sorry</body></html>"
DRIVE_ID = "1TestTestTestTestTestTestTestTest"


class Tiny(nn.Module):
    def __init__(self, out_channels: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(3, out_channels, 1)
        self.norm = nn.BatchNorm2d(out_channels)


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


@pytest.fixture
def ckpt(model) -> bytes:
    return _saved(model.state_dict())


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("VOS_WEIGHTS", str(root))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return root


def files_in(root: Path) -> list:
    """Every file under the cache, hidden staging files included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def register(monkeypatch, name="test-url", **fields) -> WeightSpec:
    fields = {"paper": "testpaper", "dataset": "davis", "description": "test checkpoint",
              "filename": "test.pth", "source": "tests", **fields}
    spec = WeightSpec(name=name, **fields)
    monkeypatch.setitem(CHECKPOINT_REGISTRY, name, spec)
    return spec


# ----------------------------------------------------------------------------- local HTTP server

class Server:
    """Serves `routes[path] = (status, body, content_length)` on 127.0.0.1 and counts requests."""

    def __init__(self):
        self.routes = {}
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                status, body, length = server.routes.get(self.path, (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.deadline = threading.Timer(60, self.httpd.shutdown)  # never outlives a hung test run

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = Server()
    srv.thread.start()
    srv.deadline.start()
    try:
        yield srv
    finally:
        srv.deadline.cancel()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


# ----------------------------------------------------------------------------- registry

def test_registry_is_complete_and_well_formed():
    assert REQUIRED <= set(CHECKPOINT_REGISTRY.names())
    seen = set()
    for spec in CHECKPOINT_REGISTRY:
        name = spec.name
        assert spec in PAPERS[spec.paper].checkpoints.CHECKPOINTS  # registered by its own paper, beside its model
        assert name == spec.paper or name.startswith(spec.paper + "-")
        assert spec.dataset in {"davis", "ytvos"}
        assert spec.description and spec.source
        assert re.fullmatch(r"[\w.-]+\.pth", spec.filename)
        assert spec.filename not in spec.aliases
        assert (spec.paper, spec.filename) not in seen
        seen.add((spec.paper, spec.filename))
        assert not (spec.drive_id and spec.url), "one download source per entry"
        if spec.drive_id:
            assert re.fullmatch(r"[\w-]{25,}", spec.drive_id)
            assert spec.page_url == f"https://drive.google.com/file/d/{spec.drive_id}/view"
        elif spec.url:
            assert spec.url.startswith("https://")
        else:
            assert spec.manual, f"{name} has no link, so it must say how to get the file by hand"
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert spec.git_blob_sha1 is None or re.fullmatch(r"[0-9a-f]{40}", spec.git_blob_sha1)
    assert CHECKPOINT_REGISTRY["hmmn"].module_prefix  # the official script loads it into nn.DataParallel


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VOS_WEIGHTS", str(tmp_path / "w"))
    assert cache_dir() == tmp_path / "w"
    monkeypatch.delenv("VOS_WEIGHTS")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "vos-papers"
    assert weights.weight_path("tbd-davis") == tmp_path / ".cache" / "vos-papers" / "tbd" / "TBD_davis.pth"


def test_unknown_name(cache):
    with pytest.raises(UserError, match="unknown weights 'nope'.*bmvos-davis"):
        fetch("nope")


# ----------------------------------------------------------------------------- plain URL downloads

def test_url_download_checks_sha256_then_hits_cache_offline(cache, server, monkeypatch, ckpt):
    server.routes["/w.pth"] = (200, ckpt, None)
    register(monkeypatch, url=server.url("/w.pth"), sha256=hashlib.sha256(ckpt).hexdigest())
    path = fetch("test-url")
    assert path == cache / "testpaper" / "test.pth"
    assert path.read_bytes() == ckpt
    assert files_in(cache) == ["testpaper/test.pth"]

    server.routes.clear()
    assert fetch("test-url") == path  # cache hit: no request made
    assert server.requests == 1


@pytest.mark.parametrize("case, body, length, message", [
    ("html", HTML, None, r"HTML page instead of the checkpoint"),
    ("truncated file", None, None, r"truncated or damaged"),
    ("broken transfer", None, "double", r"broke off|truncated"),
    ("not found", b"gone", None, r"refused .*HTTP 404"),
])
def test_url_download_failures_leave_nothing(cache, server, monkeypatch, ckpt, case, body, length, message):
    body = ckpt[: len(ckpt) // 2] if body is None else body
    status = 404 if case == "not found" else 200
    server.routes["/w.pth"] = (status, body, 2 * len(body) if length == "double" else None)
    spec = register(monkeypatch, url=server.url("/w.pth"))
    with pytest.raises(UserError, match=message) as err:
        fetch("test-url")
    assert spec.url in str(err.value)  # tells the user where to download by hand ...
    assert str(cache / "testpaper" / "test.pth") in str(err.value)  # ... and where to put it
    assert files_in(cache) == []


def test_sha256_mismatch(cache, server, monkeypatch, ckpt):
    server.routes["/w.pth"] = (200, ckpt, None)
    register(monkeypatch, url=server.url("/w.pth"), sha256="0" * 64)
    with pytest.raises(UserError, match=f"sha256 mismatch.*got {hashlib.sha256(ckpt).hexdigest()}"):
        fetch("test-url")
    assert files_in(cache) == []


def test_git_blob_hash_is_checked(cache, server, monkeypatch, ckpt, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    (tmp_path / "blob").write_bytes(ckpt)
    blob_id = subprocess.run(["git", "hash-object", str(tmp_path / "blob")], capture_output=True, text=True,
                             check=True).stdout.strip()
    server.routes["/w.pth"] = (200, ckpt, None)
    register(monkeypatch, url=server.url("/w.pth"), git_blob_sha1=blob_id)
    assert fetch("test-url").read_bytes() == ckpt
    register(monkeypatch, name="test-bad", url=server.url("/w.pth"), filename="bad.pth",
             git_blob_sha1="f" * 40)
    with pytest.raises(UserError, match="git blob hash mismatch"):
        fetch("test-bad")
    assert files_in(cache) == ["testpaper/test.pth"]


def test_offline(cache, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    register(monkeypatch, url=f"http://127.0.0.1:{port}/w.pth")
    with pytest.raises(UserError, match=r"offline.*--weights seeded.*make demo"):
        fetch("test-url")
    assert files_in(cache) == []


# ----------------------------------------------------------------------------- Google Drive (gdown)

def fake_gdown(monkeypatch, cache, behaviour, *, cached_before=False):
    """Replace gdown.download; `behaviour(output)` plays the part of Google Drive."""
    calls = []

    def download(url=None, output=None, quiet=False, id=None, **kwargs):
        calls.append(id)
        out = Path(output)
        # the download is staged beside the cache entry (same file system, so the rename is atomic),
        # never written over the final name
        assert out.parent.parent == cache / "testpaper" and out.parent.name.startswith(".download-")
        assert (cache / "testpaper" / "test.pth").exists() == cached_before
        return behaviour(out)

    monkeypatch.setattr(gdown, "download", download)
    return calls


def test_drive_download(cache, monkeypatch, ckpt, model):
    register(monkeypatch, name="test-drive", drive_id=DRIVE_ID)
    calls = fake_gdown(monkeypatch, cache, lambda out: (out.write_bytes(ckpt), str(out))[1])
    path = fetch("test-drive")
    assert calls == [DRIVE_ID]
    assert files_in(cache) == ["testpaper/test.pth"]
    state = load_state_dict("test-drive")  # a cache hit: gdown is not called again
    assert calls == [DRIVE_ID]
    assert state.source == path
    load_into(Tiny(), state)


def _write_partial_then(exc):
    def behaviour(out: Path):
        (out.parent / (out.name + "abc.part")).write_bytes(b"PK\x03\x04 partial")  # what gdown leaves
        raise exc
    return behaviour


@pytest.mark.parametrize("behaviour, message", [
    (_write_partial_then(gdown.exceptions.FileURLRetrievalError(
        "Too many users have viewed or downloaded this file recently.\nmore")), r"refused.*Too many users"),
    (_write_partial_then(requests.exceptions.ConnectionError("no route")), r"offline.*--weights seeded.*make demo"),
    (lambda out: (out.write_bytes(HTML), str(out))[1], r"HTML page"),
    (lambda out: None, r"refused .*nothing was downloaded"),  # older gdown returns None on failure
])
def test_drive_failures_leave_nothing(cache, monkeypatch, behaviour, message):
    register(monkeypatch, name="test-drive", drive_id=DRIVE_ID)
    fake_gdown(monkeypatch, cache, behaviour)
    with pytest.raises(UserError, match=message) as err:
        fetch("test-drive")
    assert f"https://drive.google.com/file/d/{DRIVE_ID}/view" in str(err.value)
    assert str(cache / "testpaper" / "test.pth") in str(err.value)
    assert files_in(cache) == []


def test_forced_download_that_fails_keeps_the_old_file(cache, monkeypatch, ckpt):
    register(monkeypatch, name="test-drive", drive_id=DRIVE_ID)
    fake_gdown(monkeypatch, cache, lambda out: (out.write_bytes(ckpt), str(out))[1])
    path = fetch("test-drive")
    fake_gdown(monkeypatch, cache, lambda out: (out.write_bytes(ckpt[:100]), str(out))[1], cached_before=True)
    with pytest.raises(UserError, match="truncated"):
        fetch("test-drive", force=True)
    assert path.read_bytes() == ckpt
    assert files_in(cache) == ["testpaper/test.pth"]


def test_hand_placed_files(cache, monkeypatch, ckpt):
    register(monkeypatch, name="test-drive", drive_id=DRIVE_ID, aliases=("other.pth",))
    fake_gdown(monkeypatch, cache, lambda out: pytest.fail("must not download"))
    (cache / "testpaper").mkdir(parents=True)
    (cache / "testpaper" / "other.pth").write_bytes(ckpt)  # the name the official script uses
    assert fetch("test-drive") == cache / "testpaper" / "other.pth"
    assert cached_path("test-drive") == cache / "testpaper" / "other.pth"

    (cache / "testpaper" / "test.pth").write_bytes(HTML)  # a browser "download" that saved the page
    with pytest.raises(UserError, match=r"HTML page.*delete it.*--force test-drive"):
        fetch("test-drive")


def test_entry_without_link(cache, monkeypatch):
    register(monkeypatch, name="test-manual", manual="Ask the authors for it.")
    with pytest.raises(UserError, match=r"no download link.*Ask the authors.*testpaper/test.pth"):
        fetch("test-manual")
    assert files_in(cache) == []


# ----------------------------------------------------------------------------- load_state_dict

def test_load_state_dict_strips_dataparallel_prefix(tmp_path, model):
    wrapped = nn.DataParallel(model)  # a CPU-only DataParallel still prefixes its keys
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    torch.save(wrapped.state_dict(), tmp_path / "dp.pth")
    state = load_state_dict(tmp_path / "dp.pth")
    assert list(state) == list(model.state_dict())
    assert state.source == tmp_path / "dp.pth"
    loaded = load_into(Tiny(), state)
    assert torch.equal(loaded.conv.weight, model.conv.weight)


def test_load_state_dict_unwraps_nesting(tmp_path, model):
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "nested.pth")
    assert list(load_state_dict(str(tmp_path / "nested.pth"))) == list(model.state_dict())


def test_load_state_dict_registry_nested_key(cache, monkeypatch, model):
    register(monkeypatch, name="test-nested", drive_id=DRIVE_ID, nested_key="net")
    (cache / "testpaper").mkdir(parents=True)
    torch.save({"net": model.state_dict(), "optimizer": {}}, cache / "testpaper" / "test.pth")
    assert list(load_state_dict("test-nested")) == list(model.state_dict())


def test_load_state_dict_bad_files(tmp_path):
    with pytest.raises(UserError, match="no checkpoint file at .*missing.pth.*not a registered"):
        load_state_dict(tmp_path / "missing.pth")
    torch.save({"w": torch.zeros(1), "cfg": Tiny}, tmp_path / "pickled.pth")
    with pytest.raises(UserError, match="pickled Python objects"):
        load_state_dict(tmp_path / "pickled.pth")
    torch.save({"w": torch.zeros(1), "step": 3}, tmp_path / "mixed.pth")
    with pytest.raises(UserError, match="entry 'step' is a int, not a tensor"):
        load_state_dict(tmp_path / "mixed.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        load_state_dict(tmp_path / "text.pth")


# ----------------------------------------------------------------------------- load_into

def test_load_into_names_first_mismatches(tmp_path, model):
    state = dict(model.state_dict())
    state.pop("conv.bias")
    state["extra.weight"] = torch.zeros(1)
    state["norm.weight"] = torch.zeros(5)
    with pytest.raises(UserError) as err:
        load_into(Tiny(), state, source=tmp_path / "x.pth")
    message = str(err.value)
    assert f"checkpoint {tmp_path / 'x.pth'} does not fit Tiny" in message
    assert "1 missing key(s), first 'conv.bias'" in message
    assert "1 unexpected key(s), first 'extra.weight'" in message
    assert "first 'norm.weight': checkpoint [5] vs model [2]" in message


def test_load_into_reports_the_file_it_came_from(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "small.pth")
    with pytest.raises(UserError, match=r"small.pth does not fit Tiny: .*shape mismatch"):
        load_into(Tiny(out_channels=4), load_state_dict(tmp_path / "small.pth"))
    with pytest.raises(UserError, match=r"small.pth does not fit"):
        load_into(Tiny(out_channels=4), tmp_path / "small.pth")  # a path works too


def test_load_into_accepts_old_batchnorm_checkpoints(model):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = load_into(Tiny(), state)
    assert torch.equal(loaded.norm.running_var, model.norm.running_var)


def test_official_or_seeded_uses_the_cache_only(cache, monkeypatch, capsys, ckpt, model):
    register(monkeypatch, name="test-drive", drive_id=DRIVE_ID)
    fake_gdown(monkeypatch, cache, lambda out: pytest.fail("a demo must not download"))
    seeded = official_or_seeded("test-drive", Tiny, torch.device("cpu"))
    assert "testpaper: official weights not in the cache (python -m vos.weights fetch test-drive)" \
        in capsys.readouterr().out
    assert not seeded.training
    assert torch.equal(seeded.conv.weight, seeded_init(Tiny, torch.device("cpu")).conv.weight)  # reproducible

    (cache / "testpaper").mkdir(parents=True)
    (cache / "testpaper" / "test.pth").write_bytes(ckpt)
    torch.manual_seed(1)  # a fresh Tiny() now differs from `model` (seed 0): equal weights mean the file loaded
    official = official_or_seeded("test-drive", Tiny, torch.device("cpu"))
    assert capsys.readouterr().out.strip() == f"testpaper: official weights {cache / 'testpaper' / 'test.pth'}"
    assert torch.equal(official.conv.weight, model.conv.weight) and not official.training


def test_build_with_weights_seeded_or_checkpoint(tmp_path, capsys, model):
    """`--weights seeded` (any case): the seeded initialisation and one notice naming the paper; anything
    else is a registry name or a file, loaded strictly."""
    assert is_seeded("seeded") and is_seeded(" Seeded ") and not is_seeded("none") and not is_seeded(None)
    assert is_seeded("none", aliases=("none",)) and not is_seeded(tmp_path / "seeded.pth")
    built = build_with_weights(Tiny, "seeded", torch.device("cpu"), paper="Tiny")
    assert capsys.readouterr().out.splitlines() == [seeded_notice("Tiny")]
    assert "not the paper's" in seeded_notice("Tiny") and not built.training
    assert torch.equal(built.conv.weight, seeded_init(Tiny, torch.device("cpu")).conv.weight)
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    loaded = build_with_weights(Tiny, path, torch.device("cpu"), paper="Tiny")
    assert torch.equal(loaded.conv.weight, model.conv.weight) and not loaded.training
    assert capsys.readouterr().out == ""
    with pytest.raises(UserError, match="no checkpoint file at"):
        build_with_weights(Tiny, tmp_path / "missing.pth", torch.device("cpu"), paper="Tiny")


# ----------------------------------------------------------------------------- CLI

def test_cli_list_and_errors(cache, capsys):
    assert weights_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REQUIRED)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(weights_cli.main, ["fetch", "nope"])
    assert exit_info.value.code == 2
    assert "unknown weights 'nope'" in capsys.readouterr().err
