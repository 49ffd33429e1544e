"""Official checkpoints: the registry each paper fills (its `checkpoints.py`), the cache, and loading.

    CHECKPOINT_REGISTRY['bmvos-davis']  a frozen `WeightSpec`, registered by bmvos/checkpoints.py
    fetch('bmvos-davis')              -> Path in the cache, downloaded and checked on first use
    load_state_dict('bmvos-davis')    -> {key: Tensor}, `torch.load(weights_only=True)`, `module.` stripped
    load_into(model, state_dict)      strict load; one `UserError` naming the first mismatching key
    official_or_seeded('bmvos-davis', BMVOS, device)   demos: cached official weights, else a seeded init
    demo_model('bmvos-davis', BMVOS, device, trained=PATH)  the same, or weights trained here, and which it used
    build_with_weights(BMVOS, args.weights, device, paper='BMVOS')   entry points: `--weights seeded|NAME|PATH`

The cache is `$VOS_WEIGHTS` or `~/.cache/vos-papers`, one folder per paper holding the official file
names (`<cache>/bmvos/BMVOS_davis.pth`), so a file downloaded by hand can be dropped in place.
A download goes to a private temporary folder inside the cache and is moved into place only after it
has been checked (not an HTML page, loadable by `torch.load(weights_only=True)`, hash when known), so
an interrupted or refused download never leaves a file that looks like a checkpoint.

Command line (every paper's entries): `python -m vos.weights list` and `python -m vos.weights fetch NAME ...`.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from common.hub.download import DRIVE_PAGE, download, reject_empty_or_html, staging_folder
from common.hub.registry import Registry
from common.runtime.errors import UserError

if TYPE_CHECKING:  # torch itself is imported where a checkpoint is loaded: the papers' packages register their
    import torch  # checkpoints on import, and `--help` must not wait for torch


@dataclass(frozen=True)
class WeightSpec:
    """One official checkpoint.

    Exactly one of `drive_id` / `url` says where to download it; with neither, `manual` tells the user
    where to get the file by hand. `sha256` is None where no official hash was published and the file
    could not be downloaded to compute one (true of every entry so far); `git_blob_sha1` is the git
    object id when the file is committed to the official repository, which pins the exact bytes too.
    """

    name: str
    paper: str                       # package name: bmvos, emvos, tbd, hmmn, gis
    description: str
    dataset: str                     # benchmark family it is meant for: 'davis' or 'ytvos'
    filename: str                    # the official file name, as the official run script loads it
    source: str                      # where the link / file name was taken from
    drive_id: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    git_blob_sha1: Optional[str] = None
    nested_key: Optional[str] = None  # state_dict stored under checkpoint[nested_key]; None = plain
    module_prefix: bool = False      # saved from nn.DataParallel: every key starts with 'module.'
    aliases: Tuple[str, ...] = ()    # other names the official code uses for the same file
    manual: str = ""                 # how to get the file when there is no download link

    @property
    def page_url(self) -> Optional[str]:
        """The address a person opens in a browser to download the file by hand."""
        if self.drive_id:
            return DRIVE_PAGE.format(self.drive_id)
        return self.url


CHECKPOINT_REGISTRY: Registry[WeightSpec] = Registry("weights")  # filled by each paper's checkpoints.py




# ----------------------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    """`$VOS_WEIGHTS` when set, else `~/.cache/vos-papers`."""
    return Path(os.environ.get("VOS_WEIGHTS") or "~/.cache/vos-papers").expanduser()


def spec_for(name: str) -> WeightSpec:
    return CHECKPOINT_REGISTRY[name]


def weight_path(name: str, *, cache_dir: Optional[Path] = None) -> Path:
    """Where the checkpoint `name` lives in the cache (whether or not it is there yet)."""
    spec = spec_for(name)
    return _root(cache_dir) / spec.paper / spec.filename


def cached_path(name: str, *, cache_dir: Optional[Path] = None) -> Optional[Path]:
    """The cached file for `name` (official name or an alias), or None; no download, no check."""
    spec = spec_for(name)
    folder = _root(cache_dir) / spec.paper
    for filename in (spec.filename, *spec.aliases):
        if (folder / filename).is_file():
            return folder / filename
    return None


def cached_problem(name: str, *, cache_dir: Optional[Path] = None) -> Optional[str]:
    """Why the cached file for `name` cannot be used (None when it looks whole), from cheap checks only, for
    `vos.weights list`: empty or an HTML page, a known hash that differs, or a zip-format checkpoint (what
    `torch.save` writes) whose central directory at the end of the file is missing, i.e. a truncated download.
    `fetch` and loading check completely (`torch.load`)."""
    spec = spec_for(name)
    path = cached_path(name, cache_dir=cache_dir)
    if path is None:
        return None
    try:
        reject_empty_or_html(path, what=f"weights {spec.name!r}", hint="", kind="checkpoint")
    except UserError as err:
        return str(err).strip()
    if _looks_like_truncated_zip(path) and not zipfile.is_zipfile(path):  # a zip's start without its end
        return f"{path} is truncated (its zip directory is missing: an incomplete download?)"
    for expected, hasher in ((spec.sha256, hashlib.sha256), (spec.git_blob_sha1, None)):
        if expected is None:
            continue
        digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size) if hasher is None else hasher()
        if _file_digest(path, digest) != expected:
            return f"{path} does not have the official file's hash (damaged or another file)"
    return None


def _root(explicit: Optional[Path]) -> Path:
    return Path(explicit).expanduser() if explicit is not None else cache_dir()


# ----------------------------------------------------------------------------------------- fetch

def fetch(name: str, *, cache_dir: Optional[Path] = None, force: bool = False) -> Path:
    """The checked local path of checkpoint `name`, downloading it into the cache if needed.

    A cached file is checked and returned without touching the network. `force=True` downloads
    again; the old file is replaced only once the new one has passed every check.
    """
    spec = spec_for(name)
    dest = weight_path(name, cache_dir=cache_dir)
    present = cached_path(name, cache_dir=cache_dir)
    if present is not None and not force:
        try:
            _check_checkpoint(present, spec)
        except UserError as err:
            raise UserError(f"{err} This file is in the weights cache; delete it, or re-download with "
                            f"`python -m vos.weights fetch --force {name}`.") from None
        return present

    if spec.page_url is None:
        raise UserError(f"no download link is known for weights {name!r} ({spec.description}). "
                        f"{spec.manual} Save the file as {dest}.")

    # A private folder on the same file system: gdown's own partial files land in it too, the final
    # os.replace is atomic, and removing the folder leaves nothing half-written behind.
    with staging_folder(dest.parent, fix="set $VOS_WEIGHTS to a writable folder") as staging:
        tmp = staging / spec.filename
        _download(spec, tmp, dest)
        _check_checkpoint(tmp, spec, dest=dest)
        os.replace(tmp, dest)
    return dest


def _manual_hint(spec: WeightSpec, dest: Path) -> str:
    return (f"Download it by hand from {spec.page_url} and save it as {dest} "
            f"(or set $VOS_WEIGHTS to a folder holding {spec.paper}/{spec.filename}).")


_OFFLINE_HINT = ("To run without the official weights, pass --weights seeded (a seeded initialisation; "
                 "the numbers are then not the paper's), or run `make demo`.")


def _download(spec: WeightSpec, tmp: Path, dest: Path) -> None:
    download(tmp, what=f"weights {spec.name!r}", hint=_manual_hint(spec, dest),
             drive_id=spec.drive_id, url=spec.url, offline_hint=_OFFLINE_HINT)


# ----------------------------------------------------------------------------------------- checks

def _check_checkpoint(path: Path, spec: WeightSpec, *, dest: Optional[Path] = None) -> None:
    """Raise one UserError unless `path` is a complete checkpoint with the expected bytes."""
    where = dest or path
    hint = _manual_hint(spec, where) if spec.page_url else f"{spec.manual} Save the file as {where}."
    reject_empty_or_html(path, what=f"weights {spec.name!r}", hint=hint, kind="checkpoint")
    size = path.stat().st_size
    if spec.sha256 is not None:
        actual = _file_digest(path, hashlib.sha256())
        if actual != spec.sha256:
            raise UserError(f"sha256 mismatch for weights {spec.name!r} ({path}): got {actual}, expected "
                            f"{spec.sha256}; the file is damaged or not the official one. {hint}")
    if spec.git_blob_sha1 is not None:
        git_hash = hashlib.sha1(b"blob %d\0" % size)
        actual = _file_digest(path, git_hash)
        if actual != spec.git_blob_sha1:
            raise UserError(f"git blob hash mismatch for weights {spec.name!r} ({path}): got {actual}, "
                            f"expected {spec.git_blob_sha1}; the file is damaged or not the official one. "
                            f"{hint}")
    try:
        _torch_load(path, "cpu", cheap=True)
    except UserError as err:
        raise UserError(f"{err} {hint}") from None


def _file_digest(path: Path, hasher) -> str:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def file_sha256(path: Path) -> str:
    return _file_digest(path, hashlib.sha256())


def _torch_load(path: Path, map_location, *, cheap: bool = False):
    """`torch.load(weights_only=True)` with its failures turned into one UserError.

    `cheap=True` memory-maps zip-format files, so checking that a large file loads reads its index,
    not all its tensor data.
    """
    import torch

    is_zip = zipfile.is_zipfile(path)
    try:
        if cheap and is_zip:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... depending on damage
        if "weights only load failed" in str(err).lower():
            raise UserError(f"checkpoint {path} holds pickled Python objects besides tensors, so it cannot "
                            f"be loaded safely with torch.load(weights_only=True); is it the official file?"
                            ) from None
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if is_zip or _looks_like_truncated_zip(path):
            problem = "is truncated or damaged (an incomplete download?)"
        else:
            problem = "is not a PyTorch checkpoint, or is truncated"
        raise UserError(f"checkpoint {path} {problem}: torch.load failed with: {first_line}") from None


def _looks_like_truncated_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


# ----------------------------------------------------------------------------------------- loading

class StateDict(OrderedDict):
    """A state_dict that remembers which file it came from, for error messages."""

    source: Optional[Path] = None


_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


def load_state_dict(name_or_path: Union[str, os.PathLike], *, map_location="cpu") -> StateDict:
    """Tensors of a checkpoint, given a registry name (fetched if needed) or a file path.

    Loads with `weights_only=True`, unwraps the nesting the registry records (or, for a bare file,
    a single dict under a usual key such as 'state_dict'), and strips the `module.` prefix that
    `nn.DataParallel` adds.
    """
    spec: Optional[WeightSpec] = None
    if isinstance(name_or_path, str) and name_or_path in CHECKPOINT_REGISTRY:
        spec = CHECKPOINT_REGISTRY[name_or_path]
        path = fetch(name_or_path)
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserError(f"no checkpoint file at {path}, and {str(name_or_path)!r} is not a registered "
                            f"weights name (known: {', '.join(sorted(CHECKPOINT_REGISTRY.names()))})")

    import torch

    obj = _torch_load(path, map_location)
    if spec is not None and spec.nested_key is not None:
        if not isinstance(obj, Mapping) or spec.nested_key not in obj:
            raise UserError(f"checkpoint {path} has no {spec.nested_key!r} entry, where the official "
                            f"{spec.name!r} file keeps its weights; is it the right file?")
        obj = obj[spec.nested_key]
    else:
        obj = _unwrap(obj)

    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"checkpoint {path} holds {type(obj).__name__}, not a state_dict (a dict of tensors)")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UserError(f"checkpoint {path} is not a plain state_dict: entry {bad!r} is a "
                        f"{type(obj[bad]).__name__}, not a tensor")

    state = StateDict((_strip_module(key), value) for key, value in obj.items())
    state.source = path
    return state


def _unwrap(obj):
    """Descend into {'state_dict': {...}, 'epoch': 3, ...}-style wrappers until the tensors."""
    import torch

    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _NESTING_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def load_into(model: torch.nn.Module,
              state_dict: Union[Mapping[str, torch.Tensor], str, os.PathLike],
              *, source: Optional[Union[str, os.PathLike]] = None) -> torch.nn.Module:
    """`model.load_state_dict(state_dict, strict=True)`, with a mismatch reported as one UserError.

    `state_dict` may also be a registry name or a file path. The message names the checkpoint, the
    first missing key, the first unexpected key and the first shape mismatch.
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = load_state_dict(state_dict)
    origin = source if source is not None else getattr(state_dict, "source", None)
    where = f"checkpoint {origin}" if origin is not None else "the state_dict"
    target = model.state_dict()

    # BatchNorm fills in a missing `num_batches_tracked` itself (checkpoints from torch < 0.4.1).
    missing = [k for k in target if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in target]
    mismatched = [k for k in target if k in state_dict and tuple(state_dict[k].shape) != tuple(target[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    if mismatched:
        k = mismatched[0]
        problems.append(f"{len(mismatched)} shape mismatch(es), first {k!r}: checkpoint "
                        f"{list(state_dict[k].shape)} vs model {list(target[k].shape)}")
    if problems:
        raise UserError(f"{where} does not fit {type(model).__name__}: {'; '.join(problems)}. "
                        f"Is it the checkpoint for this model?")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # anything the checks above did not foresee
        first_line = (str(err).strip().splitlines() or ["?"])[0]
        raise UserError(f"{where} does not load into {type(model).__name__}: {first_line}") from None
    return model


# ----------------------------------------------------------------------------------------- demos and benchmarks

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")


def seeded_init(build: Callable[[], ModuleT], device: torch.device, *, seed: int = 0) -> ModuleT:
    """`build()` under `torch.manual_seed(seed)`, in eval mode on `device`: the model's own initialisation,
    reproducible, for demos and benchmarks that run without the official weights."""
    import torch

    torch.manual_seed(seed)
    return build().to(device).eval()


def official_or_seeded(name: str, build: Callable[[], ModuleT], device: torch.device, *, seed: int = 0) -> ModuleT:
    """`build()` with the official checkpoint `name` when it is already in the cache, else `seeded_init`.

    Never downloads, so `make demo` runs offline. Prints which weights it used, prefixed with the paper,
    because with the seeded initialisation the scores mean nothing.
    """
    return demo_model(name, build, device, seed=seed)[0]


# What `demo_model` used, as `make demo` labels its rows
TRAINED_HERE, OFFICIAL, SEEDED_INIT = "trained here on generated data", "official", "seeded"


def demo_model(name: str, build: Callable[[], ModuleT], device: torch.device, *,
               trained: Optional[Path] = None, seed: int = 0) -> Tuple[ModuleT, str]:
    """(model, which weights) for a demo: `trained` (a checkpoint trained on this machine, e.g. by `make
    train-sample`) when given, else the official checkpoint `name` when it is cached, else `seeded_init`.
    Never downloads; prints which weights it used, prefixed with the paper."""
    spec = spec_for(name)
    if trained is not None:
        print(f"{spec.paper}: weights trained here on generated data, {trained}")
        model = build()
        load_into(model, Path(trained))
        return model.to(device).eval(), TRAINED_HERE
    path = cached_path(name)
    if path is None:
        print(f"{spec.paper}: official weights not in the cache (python -m vos.weights fetch {name}); "
              f"using a seeded random initialisation, so the scores mean nothing")
        return seeded_init(build, device, seed=seed), SEEDED_INIT
    print(f"{spec.paper}: official weights {path}")
    model = build()
    load_into(model, path)
    return model.to(device).eval(), OFFICIAL


SEEDED = "seeded"  # the `--weights` value every entry point accepts for a run without the official weights


def is_seeded(weights: Optional[Union[str, os.PathLike]], aliases: Sequence[str] = ()) -> bool:
    """Whether a `--weights` value asks for the seeded initialisation (`seeded`, or one of `aliases`)."""
    return weights is not None and str(weights).strip().lower() in (SEEDED, *aliases)


def seeded_notice(paper: str, seed: int = 0) -> str:
    # the paper is named once, inside the sentence: the entry point's own line before it already starts with it
    return (f"notice: --weights {SEEDED}: a seeded random initialisation (seed {seed}) instead of {paper}'s "
            f"official weights; the numbers are not the paper's")


def build_with_weights(build: Callable[[], ModuleT], weights: Optional[Union[str, os.PathLike]],
                       device: torch.device, *, paper: str, seed: int = 0) -> ModuleT:
    """`build()` in eval mode on `device` with `weights`: a registry name or checkpoint file (strict load), or
    `seeded` for `seeded_init` with one notice on stdout that the numbers are not the paper's. None is the
    silent seeded initialisation of benchmarks and tests, which say so themselves."""
    if weights is None:
        return seeded_init(build, device, seed=seed)
    if is_seeded(weights):
        print(seeded_notice(paper, seed))
        return seeded_init(build, device, seed=seed)
    model = build()
    load_into(model, weights)
    return model.to(device).eval()
