"""The authors' released results: where each archive lives, how to fetch it, and what must be inside.

    RESULTS_REGISTRY['hmmn-davis17-val']   registry entry (a frozen `ResultsSpec`), registered by hmmn/checkpoints.py
    fetch('hmmn-davis17-val')              -> `Layout`: the extracted folder and, per set, its result folder

An archive is downloaded with `common.hub.download` (the checked, atomic machinery of the weights) into a
private staging folder, extracted there (zip or tar; members that would land outside it, links and
devices are refused), its layout verified, and only then renamed to `<cache>/precomputed/<name>/`
(`<cache>` as for the weights: `$VOS_WEIGHTS` or `~/.cache/vos-papers`). Command line: `python -m vos.precomputed`. A refused or damaged
download, a damaged archive or an unexpected layout leaves nothing behind.

Layout check. A *result folder* is a folder of sequence folders that hold PNG masks. Each found result
folder is matched to a benchmark set by its sequence names: the lists of the DAVIS root given with
`--davis` (its ImageSets), else the official DAVIS 2016/2017 val lists kept here; DAVIS 2017 test-dev
and YouTube-VOS valid (whose names are not kept here) by their number of sequences (see `locate_sets`). The
contents of the archives have not been inspected; where an archive holds several sets and its README
does not say which, they are taken from the paper's tables and marked unconfirmed: the check then asks
for at least one of them and reports which it found. The GIS results are summary files committed in the
official repository; their check is the list of those files.
"""
from __future__ import annotations

import os
import re
import stat
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from common.hub.checkpoints import cache_dir
from common.hub.download import DRIVE_PAGE, download, reject_empty_or_html, staging_folder
from common.hub.registry import Registry
from common.runtime.errors import UserError


@dataclass(frozen=True)
class ResultsSpec:
    """One archive of results released by the authors.

    `drive_ids` lists the Google Drive files in the order they are tried: the link in the current
    official README first, then older links a previous README version gave (`source` says which).
    """

    name: str
    paper: str
    description: str
    source: str
    sets: Tuple[str, ...] = ()             # benchmark sets expected inside (names of `SETS`)
    sets_confirmed: bool = False           # False: `sets` follows the paper's tables, the archive is unseen
    drive_ids: Tuple[str, ...] = ()
    url: Optional[str] = None
    summary_files: Tuple[str, ...] = ()    # instead of sets: files that must exist under the archive's top folder

    @property
    def page_urls(self) -> List[str]:
        """The addresses a person opens in a browser to download the archive by hand."""
        return [DRIVE_PAGE.format(i) for i in self.drive_ids] + ([self.url] if self.url else [])


RESULTS_REGISTRY: Registry[ResultsSpec] = Registry("results")  # filled by each paper's checkpoints.py
DAVIS_AND_YTVOS18 = ("davis16-val", "davis17-val", "davis17-test-dev", "ytvos18-valid")  # one archive's sets





# ----------------------------------------------------------------------------------------- benchmark sets

@dataclass(frozen=True)
class SetInfo:
    label: str
    count: int                      # number of sequences
    davis: Optional[Tuple[int, str]] = None  # (year, split) of a DAVIS set, whose list ImageSets gives


SETS: Dict[str, SetInfo] = {
    "davis16-val": SetInfo("DAVIS 2016 val", 20, (2016, "val")),
    "davis17-val": SetInfo("DAVIS 2017 val", 30, (2017, "val")),
    "davis17-test-dev": SetInfo("DAVIS 2017 test-dev", 30, (2017, "test-dev")),
    "ytvos18-valid": SetInfo("YouTube-VOS 2018 valid", 474),
    "ytvos19-valid": SetInfo("YouTube-VOS 2019 valid", 507),
}

# The official ImageSets lists (DAVIS 2017 trainval), used when no DAVIS root is given.
DAVIS16_VAL = ("blackswan", "bmx-trees", "breakdance", "camel", "car-roundabout", "car-shadow", "cows",
               "dance-twirl", "dog", "drift-chicane", "drift-straight", "goat", "horsejump-high", "kite-surf",
               "libby", "motocross-jump", "paragliding-launch", "parkour", "scooter-black", "soapbox")
DAVIS17_VAL = tuple(sorted(DAVIS16_VAL + ("bike-packing", "dogs-jump", "gold-fish", "india", "judo", "lab-coat",
                                          "loading", "mbike-trick", "pigs", "shooting")))


def expected_sequences(set_name: str, davis_root: Optional[Path] = None) -> Optional[Tuple[str, ...]]:
    """The sequence names of `set_name`: from `davis_root`'s ImageSets when given, else the lists kept
    here; None where only the count is known (test-dev without a DAVIS root, YouTube-VOS)."""
    info = SETS[set_name]
    if info.davis is None:
        return None
    year, split = info.davis
    if davis_root is not None:
        list_path = Path(davis_root) / "ImageSets" / str(year) / f"{split}.txt"
        if not list_path.is_file():
            raise UserError(f"no sequence list {list_path}; --davis must be a DAVIS 2017 root with ImageSets/")
        return tuple(sorted({line.strip() for line in list_path.read_text().splitlines() if line.strip()}))
    return {"davis16-val": DAVIS16_VAL, "davis17-val": DAVIS17_VAL}.get(set_name)


# ----------------------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class ResultFolder:
    path: Path                     # relative to the extracted archive
    sequences: Tuple[str, ...]     # sorted names of its sequence folders


def find_result_folders(root: Path) -> List[ResultFolder]:
    """Every folder under `root` whose sub-folders hold PNG files, with the names of those sub-folders."""
    by_parent: Dict[Path, List[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__MACOSX" and not d.startswith("."))
        if any(name.lower().endswith(".png") for name in files):
            path = Path(folder)
            if path != root:
                by_parent.setdefault(path.parent.relative_to(root), []).append(path.name)
    return [ResultFolder(parent, tuple(sorted(names))) for parent, names in sorted(by_parent.items())]


_YEAR_TOKEN = re.compile(r"(?:20)?(1[6-9])")


def _matches(folder: ResultFolder, set_name: str, names: Optional[Tuple[str, ...]],
             val_names: Tuple[str, ...]) -> bool:
    if names is not None:
        return folder.sequences == names
    if len(folder.sequences) != SETS[set_name].count:
        return False
    # test-dev by count: it shares no sequence with val
    return set_name != "davis17-test-dev" or not set(folder.sequences) & set(val_names)


def _year_hint(folder: ResultFolder, set_name: str) -> bool:
    """Whether the folder's path names the set's year ('DAVIS16', 'davis-2017', ...)."""
    year = re.search(r"\d\d", set_name).group(0)  # 'davis16-val' -> '16'
    return year in _YEAR_TOKEN.findall(str(folder.path))


def locate_sets(root: Path, wanted: Sequence[str], davis_root: Optional[Path] = None) -> Dict[str, Path]:
    """{set: result folder} for each set of `wanted` found under `root` (absolute paths).

    A folder with exactly the set's sequences is taken first. A folder holding more than them (a DAVIS
    2016 folder with extra sequences) is taken only when its path names the set's year ('DAVIS16'),
    since DAVIS 2017 val holds every DAVIS 2016 val name but its masks are multi-object runs. A folder
    that fits several sets (only possible with a DAVIS root whose lists coincide, as in a generated
    sample) goes to the one its path names the year of.
    """
    folders = find_result_folders(root)
    val_names = expected_sequences("davis17-val", davis_root) or ()
    found: Dict[str, Path] = {}
    for set_name in wanted:
        names = expected_sequences(set_name, davis_root)
        fits = [f for f in folders if _matches(f, set_name, names, val_names)]
        if len(fits) > 1:
            fits = [f for f in fits if _year_hint(f, set_name)] or fits
        if not fits and names is not None:
            fits = [f for f in folders if set(names) < set(f.sequences) and _year_hint(f, set_name)]
        if fits:
            found[set_name] = root / fits[0].path
    return found


def _describe(folders: List[ResultFolder]) -> str:
    if not folders:
        return "no folder of sequence folders with PNG masks"
    shown = [f"{f.path.as_posix() or '.'} ({len(f.sequences)} sequences)" for f in folders[:6]]
    return ", ".join(shown) + (f" and {len(folders) - 6} more" if len(folders) > 6 else "")


def _closest_miss(folders: List[ResultFolder], set_name: str, davis_root: Optional[Path]) -> str:
    names = expected_sequences(set_name, davis_root)
    if names is None or not folders:
        return ""
    best = max(folders, key=lambda f: len(set(f.sequences) & set(names)))
    missing = sorted(set(names) - set(best.sequences))
    extra = sorted(set(best.sequences) - set(names))
    parts = [f"missing {', '.join(missing[:5])}" if missing else "", f"extra {', '.join(extra[:5])}" if extra else ""]
    return f"; closest is {best.path.as_posix() or '.'}: " + "; ".join(p for p in parts if p)


# ----------------------------------------------------------------------------------------- cache and fetch

@dataclass(frozen=True)
class Layout:
    name: str
    root: Path                      # the extracted archive in the cache
    sets: Dict[str, Path]           # set -> its result folder
    missing: Tuple[str, ...]        # expected sets not found (only for unconfirmed layouts)

    def report(self) -> str:
        spec = RESULTS_REGISTRY[self.name]
        if spec.summary_files:
            return f"{self.name}: {self.root} ({len(spec.summary_files)} summary files checked)"
        lines = [f"{self.name}: {self.root}"]
        lines += [f"  {s:<17} {p.relative_to(self.root).as_posix() or '.'} ({SETS[s].label})"
                  for s, p in self.sets.items()]
        if self.missing:
            lines.append(f"  not in the archive: {', '.join(self.missing)} (expected from the paper's tables; "
                         f"the archive's content was never confirmed)")
        return "\n".join(lines)


def spec_for(name: str) -> ResultsSpec:
    return RESULTS_REGISTRY[name]


def results_root(name: str, *, cache: Optional[Path] = None) -> Path:
    return (Path(cache) if cache is not None else cache_dir()) / "precomputed" / spec_for(name).name


def verify_layout(name: str, root: Path, davis_root: Optional[Path] = None) -> Layout:
    """The `Layout` of an extracted archive, or one UserError saying how it differs from what is expected."""
    spec = spec_for(name)
    if spec.summary_files:
        top = _single_top_folder(root)
        absent = [f for f in spec.summary_files if not (top / f).is_file()]
        if absent:
            raise UserError(f"results {name!r} differ from the expected layout: {len(absent)} of "
                            f"{len(spec.summary_files)} summary files are missing, first {absent[0]} "
                            f"(looked under {top})")
        return Layout(name, root, {}, ())
    found = locate_sets(root, spec.sets, davis_root)
    missing = tuple(s for s in spec.sets if s not in found)
    if not found or (missing and spec.sets_confirmed):
        folders = find_result_folders(root)
        absent = missing or spec.sets
        what = " or ".join(f"{s} ({SETS[s].label}, {SETS[s].count} sequences)" for s in absent)
        raise UserError(f"results {name!r} differ from the expected layout: no result folder for {what}; the "
                        f"archive holds {_describe(folders)}{_closest_miss(folders, absent[0], davis_root)}")
    return Layout(name, root, found, missing)


def _single_top_folder(root: Path) -> Path:
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else root


def fetch(name: str, *, cache: Optional[Path] = None, davis_root: Optional[Path] = None,
          force: bool = False) -> Layout:
    """Download and extract results `name` unless cached; either way, return its verified `Layout`.

    `force=True` downloads again; the cached copy is replaced only once the new one has passed the check.
    """
    spec = spec_for(name)
    final = results_root(name, cache=cache)
    if final.is_dir() and not force:
        try:
            return verify_layout(name, final, davis_root)
        except UserError as err:
            raise UserError(f"{err}. This copy is in the cache; delete {final}, or download it again with "
                            f"`python -m vos.precomputed fetch --force {name}`") from None
    hint = (f"Download it by hand from {' or '.join(spec.page_urls)}, extract it into an empty folder and "
            f"move that folder to {final}.")
    with staging_folder(final.parent, fix="set $VOS_WEIGHTS to a writable folder") as staging:
        archive = staging / "archive"
        _download_any(spec, archive, hint)
        reject_empty_or_html(archive, what=f"results {name!r}", hint=hint, kind="archive")
        tree = staging / "tree"
        extract(archive, tree, what=f"results {name!r}", hint=hint)
        archive.unlink()
        layout = verify_layout(name, tree, davis_root)
        if final.exists():
            os.replace(final, staging / "old")  # removed with the staging folder
        os.replace(tree, final)
    return Layout(name, final, {s: final / p.relative_to(tree) for s, p in layout.sets.items()}, layout.missing)


def _download_any(spec: ResultsSpec, archive: Path, hint: str) -> None:
    """Try each Drive id (newest README link first), then the URL; raise the last failure."""
    sources = [{"drive_id": i} for i in spec.drive_ids] + ([{"url": spec.url}] if spec.url else [])
    for k, source in enumerate(sources):
        try:
            download(archive, what=f"results {spec.name!r}", hint=hint, **source)
            return
        except UserError:
            archive.unlink(missing_ok=True)
            if k == len(sources) - 1:
                raise


# ----------------------------------------------------------------------------------------- extraction

def extract(archive: Path, out: Path, *, what: str, hint: str) -> None:
    """Extract a zip or tar archive into the new folder `out`, refusing members that would land outside it
    (absolute paths, '..') and anything but plain files and folders; damage is one UserError."""
    out.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, out, what)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, out, what)
        else:
            raise UserError(f"the download of {what} is not a zip or tar archive ({archive.stat().st_size} "
                            f"bytes); it is damaged or not the released file. {hint}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise UserError(f"the archive of {what} is damaged (an incomplete download?): {err}. {hint}") from None


def _safe_target(out: Path, member: str, what: str) -> Path:
    parts = Path(member.replace("\\", "/")).parts
    if not parts or member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member) or ".." in parts:
        raise UserError(f"the archive of {what} holds {member!r}, a path outside its folder; refusing to extract it")
    return out.joinpath(*parts)


def _progress(members, what: str):
    from tqdm import tqdm

    return tqdm(members, desc=f"extracting {what}", unit="file", file=sys.stderr, leave=False)


def _extract_zip(archive: Path, out: Path, what: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in _progress(zf.infolist(), what):
            target = _safe_target(out, info.filename, what)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UserError(f"the archive of {what} holds a link {info.filename!r}; refusing to extract it")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:  # the CRC is checked as it is read
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)


def _extract_tar(archive: Path, out: Path, what: str) -> None:
    with tarfile.open(archive) as tf:
        for member in _progress(tf, what):
            target = _safe_target(out, member.name, what)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        dst.write(block)
            else:
                raise UserError(f"the archive of {what} holds {member.name!r}, which is not a plain file or "
                                f"folder; refusing to extract it")
