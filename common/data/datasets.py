"""One loader per dataset, shared by every paper: DAVIS 2016/2017, YouTube-VOS 2018/2019 and COCO.

The loaders only find files and read them; resizing, padding and normalisation belong to each model.
They check the whole layout when constructed, so a missing folder or frame fails at once with one
`UserError` naming the path, instead of in the middle of a long run.

Mask conventions (the same as the official BMVOS/EMVOS/TBD/HMMN loaders and davis2017-evaluation):

* `Video.load_given_masks` -- the annotations a model is *given* -- turns void (255) into background,
  as the official ``LabelToLongTensor`` does, and with ``binarize`` maps every object to 1.
* `DAVIS(year=2016)` is DAVIS 2017's tree read through ``ImageSets/2016/*.txt`` with every object
  merged into one foreground (``masks != 0`` after void -> 0), exactly as the official code builds it.
  The raw DAVIS 2016 release stores foreground as 255, which every official loader reads as void (so
  it would become an empty mask); such a mask is reported as an error instead of silently used.
* `DAVIS.gt_masks` -- the ground truth a benchmark scores -- keeps void as 255, as davis2017-evaluation
  needs it to exclude those pixels; for 2016 the objects are binarised and void stays 255.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from common.data.palette import VOID_LABEL, image_size, read_label_png, read_rgb
from common.data.paths import PathLike
from common.runtime.errors import UserError

DAVIS_URL = "https://davischallenge.org/davis2017/code.html"
YTVOS_URL = "https://youtube-vos.org/dataset/"


def _given_labels(labels: np.ndarray, path: Path, binarize: bool) -> np.ndarray:
    """A given annotation as the official loaders pass it on: void -> background, optionally binary."""
    if np.any(labels == VOID_LABEL) and not np.any((labels != 0) & (labels != VOID_LABEL)):
        raise UserError(
            f"mask {path} marks its only foreground with 255, which the official loaders read as void (the raw "
            f"DAVIS 2016 format); use the DAVIS 2017 release, whose ImageSets/2016 lists give DAVIS 2016 "
            f"with object ids 1..N")
    labels = np.where(labels == VOID_LABEL, 0, labels).astype(np.uint8)
    if binarize:
        labels = (labels != 0).astype(np.uint8)
    return labels


def _binarize_keep_void(labels: np.ndarray) -> np.ndarray:
    out = (labels != 0).astype(np.uint8)
    out[labels == VOID_LABEL] = VOID_LABEL
    return out


@dataclass
class Video:
    """One sequence to segment.

    `frame_paths[i]` is frame i of what the model processes; `mask_paths` maps frame indices to the
    annotation PNGs the model is given (DAVIS: {0: first frame}; YouTube-VOS: every frame where new
    objects enter, each PNG holding only those new objects, as in the dataset). `output_frames` are the
    frame indices the benchmark scores (None = all frames); results are named `frame_names[i] + '.png'`.
    """

    name: str
    frame_paths: List[Path]
    frame_names: List[str]
    mask_paths: Dict[int, Path]
    output_frames: Optional[List[int]] = None
    binarize_masks: bool = False  # DAVIS 2016: every given mask is single-object
    gt_paths: Optional[List[Path]] = None  # per-frame ground truth where the split has it (DAVIS train/val)

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    @property
    def scored_frames(self) -> List[int]:
        """`output_frames`, with None spelled out as every frame."""
        return list(range(len(self.frame_paths))) if self.output_frames is None else list(self.output_frames)

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W) of the frames, read from the first annotation (cheap: PNG header only)."""
        from PIL import Image  # local: only the header is read
        first = self.mask_paths[min(self.mask_paths)] if self.mask_paths else self.frame_paths[0]
        with Image.open(first) as image:
            width, height = image.size
        return height, width

    def load_frames(self) -> np.ndarray:
        """uint8 [T, H, W, 3] RGB."""
        frames = [read_rgb(p) for p in self.frame_paths]
        first = frames[0].shape
        for path, frame in zip(self.frame_paths, frames):
            if frame.shape != first:
                raise UserError(f"frame {path} is {frame.shape[1]}x{frame.shape[0]} but {self.frame_paths[0]} is "
                                f"{first[1]}x{first[0]}; all frames of a video must have one size")
        return np.stack(frames)

    def load_frame(self, index: int) -> np.ndarray:
        """uint8 [H, W, 3] RGB of frame `index`, for models that stream frames."""
        return read_rgb(self.frame_paths[index])

    def load_given_masks(self, binarize: bool = False) -> Dict[int, np.ndarray]:
        """frame index -> uint8 [H, W] ids, void (255) turned into background as the official loaders do."""
        binarize = binarize or self.binarize_masks
        return {i: _given_labels(read_label_png(p), p, binarize) for i, p in sorted(self.mask_paths.items())}

    def load_gt(self) -> np.ndarray:
        """uint8 [T, H, W] ground truth of every frame, void kept as 255 (binarised for DAVIS 2016)."""
        if self.gt_paths is None:
            raise UserError(f"video {self.name} has no ground truth in this split (test-dev and YouTube-VOS valid "
                            f"are scored by the challenge servers)")
        masks = np.stack([read_label_png(p) for p in self.gt_paths])
        return _binarize_keep_void(masks) if self.binarize_masks else masks


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers that check a layout and say how to fix it.

def _require_dir(path: Path, what: str, fix: str) -> None:
    if not path.is_dir():
        raise UserError(f"{what} not found: {path}; {fix}")


def check_annotation_sizes(frame: Path, annotations: Iterable[Path]) -> None:
    """Every annotation has the size of `frame` (headers only), so a mask saved at another resolution fails
    here, naming both files, instead of as a shape error inside a model after the weights have loaded."""
    width, height = image_size(frame, "frame")
    for path in annotations:
        w, h = image_size(path, "annotation")
        if (w, h) != (width, height):
            raise UserError(f"annotation {path} is {w}x{h} but frame {frame} is {width}x{height}; annotations must "
                            f"have the size of their frames (re-extract both at the same resolution)")


def check_sequence_sizes(frame_dir: PathLike, annotation_dir: PathLike) -> None:
    """`check_annotation_sizes` for one sequence's folders (`<frames>/*.jpg`, `<annotations>/*.png`, as DAVIS and
    YouTube-VOS lay them out), for entry points that read the folders with their own loader."""
    frame_dir, annotation_dir = Path(frame_dir), Path(annotation_dir)
    _require_dir(frame_dir, "frames folder", "re-extract the dataset")
    _require_dir(annotation_dir, "annotations folder", "re-extract the dataset")
    frames = _stems(frame_dir, ".jpg")
    if not frames:
        raise UserError(f"no .jpg frames in {frame_dir}; re-extract the dataset")
    check_annotation_sizes(frame_dir / f"{min(frames, key=_frame_order)}.jpg",
                           [annotation_dir / f"{m}.png" for m in _stems(annotation_dir, ".png")])


def _stems(folder: Path, suffix: str) -> List[str]:
    """Sorted file stems with `suffix` in `folder` (hidden files ignored)."""
    return sorted(name[: -len(suffix)] for name in os.listdir(folder)
                  if name.endswith(suffix) and not name.startswith("."))


def _frame_order(stem: str) -> Tuple[float, str]:
    """Frames are named by their index; order them numerically, as the official ``int(name[:5])`` does."""
    return (int(stem) if stem.isdigit() else float("inf"), stem)


def read_json(path: Path, fix: str) -> object:
    """A JSON file's content; a file that is not JSON is one UserError (where it breaks, ending in `fix`)."""
    try:
        return json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise UserError(f"{path} is not valid JSON ({err}); {fix}") from None


_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


def _looks_whole_jpeg(path: Path) -> bool:
    """A JPEG's first and last bytes (SOI, EOI) are there: a cut-off download or copy lacks its end marker."""
    with open(path, "rb") as handle:
        start = handle.read(len(_JPEG_START))
        handle.seek(0, os.SEEK_END)
        if handle.tell() < len(_JPEG_START) + len(_JPEG_END):
            return False
        handle.seek(-len(_JPEG_END), os.SEEK_END)
        return start == _JPEG_START and handle.read() == _JPEG_END


def check_video_files(video: "Video") -> None:
    """Before the weights load: the first frame and the given masks decode, the masks are label images (not an
    RGB rendering), and every other frame is a whole JPEG (its start and end markers, read without decoding;
    a frame without them is decoded to confirm and name the problem). Each problem is one UserError naming the
    file, so that a run does not stop in the middle of a set after the weights have loaded."""
    read_rgb(video.frame_paths[0])
    for path in video.frame_paths[1:]:
        if path.suffix.lower() in (".jpg", ".jpeg") and not _looks_whole_jpeg(path):
            read_rgb(path)  # raises for a truncated or corrupt frame; one with extra trailing bytes passes
    for path in video.mask_paths.values():
        read_label_png(path)


def read_list(path: Path, fix: str, what: str = "sequence") -> List[str]:
    """The non-empty lines of a name list (ImageSets, a custom split); one UserError, ending in `fix`, if absent."""
    if not path.is_file():
        raise UserError(f"{what} list not found: {path}; {fix}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"{what} list {path} is empty; it should name one {what} per line")
    return names


# ---------------------------------------------------------------------------------------------------------------------

class _VideoSet:
    """Lookup and iteration shared by the video datasets (`names` in order, `_videos` by name)."""

    names: List[str]
    _videos: Dict[str, Video]

    def _describe(self) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Video]:
        return iter(self.videos())

    def video(self, name: str) -> Video:
        if name not in self._videos:
            raise UserError(f"{name!r} is not in {self._describe()}")
        return self._videos[name]

    def videos(self) -> List[Video]:
        return [self._videos[n] for n in self.names]


class DAVIS(_VideoSet):
    """DAVIS 2017 (multi-object) and DAVIS 2016 (single-object) semi-supervised benchmark.

    ``root`` is the DAVIS 2017 folder (JPEGImages/, Annotations/, ImageSets/{2016,2017}/). `names` are the
    sequences of ``ImageSets/<year>/<split>.txt``, sorted as the official testers sort them. train/val must have an annotation for every frame; test-dev needs only frame 0.
    """

    YEARS = (2016, 2017)
    SPLITS = ("train", "val", "test-dev")

    def __init__(self, root: PathLike, year: Union[int, str] = 2017, split: str = "val",
                 resolution: str = "480p") -> None:
        self.root = Path(root)
        self.year = int(year)
        self.split = split
        self.resolution = resolution
        if self.year not in self.YEARS:
            raise UserError(f"DAVIS year must be 2016 or 2017, got {year}")
        if split not in self.SPLITS:
            raise UserError(f"DAVIS split must be one of {', '.join(self.SPLITS)}, got {split!r}")
        _require_dir(self.root, "DAVIS root", f"download DAVIS 2017 from {DAVIS_URL} and pass its folder "
                                              f"(the one holding JPEGImages/ and Annotations/)")
        self.image_root = self.root / "JPEGImages" / resolution
        self.mask_root = self.root / "Annotations" / resolution
        _require_dir(self.image_root, "DAVIS frames folder",
                     f"the DAVIS root must contain JPEGImages/{resolution} (download the {resolution} release)")
        _require_dir(self.mask_root, "DAVIS annotations folder",
                     f"the DAVIS root must contain Annotations/{resolution}")
        list_path = self.root / "ImageSets" / str(self.year) / f"{split}.txt"
        fix = (f"DAVIS {self.year} has no {split} split" if (self.year, split) == (2016, "test-dev")
               else f"it ships with the DAVIS 2017 release ({DAVIS_URL}); test-dev comes in the test-dev download")
        self.names: List[str] = sorted(set(read_list(list_path, fix)))
        self._videos = {name: self._scan(name) for name in self.names}

    def _scan(self, name: str) -> Video:
        image_dir, mask_dir = self.image_root / name, self.mask_root / name
        _require_dir(image_dir, f"frames of sequence {name}", "the sequence is listed in ImageSets but its "
                                                              "JPEGImages folder is missing; re-extract the dataset")
        _require_dir(mask_dir, f"annotations of sequence {name}", "re-extract the dataset's Annotations")
        frames = _stems(image_dir, ".jpg")
        if not frames:
            raise UserError(f"no .jpg frames in {image_dir}; re-extract the dataset")
        expected = [f"{i:05d}" for i in range(len(frames))]
        if frames != expected:
            missing = sorted(set(expected) - set(frames))
            raise UserError(f"sequence {name} has missing or misnamed frames in {image_dir} (expected 00000.jpg .. "
                            f"{len(frames) - 1:05d}.jpg, missing e.g. {missing[:3]}); re-extract the sequence")
        masks = _stems(mask_dir, ".png")
        if frames[0] not in masks:
            raise UserError(f"first-frame annotation {mask_dir / (frames[0] + '.png')} is missing; re-extract the "
                            f"Annotations of {name}")
        gt_paths = None
        if self.split != "test-dev":
            if masks != frames:
                raise UserError(f"sequence {name} has {len(frames)} frames in {image_dir} but {len(masks)} annotations "
                                f"in {mask_dir}; train/val need one annotation per frame, re-extract the sequence")
            gt_paths = [mask_dir / f"{f}.png" for f in frames]
        check_annotation_sizes(image_dir / f"{frames[0]}.jpg", gt_paths or [mask_dir / f"{frames[0]}.png"])
        return Video(name=name,
                     frame_paths=[image_dir / f"{f}.jpg" for f in frames],
                     frame_names=frames,
                     mask_paths={0: mask_dir / f"{frames[0]}.png"},
                     output_frames=None,
                     binarize_masks=self.year == 2016,
                     gt_paths=gt_paths)

    def _describe(self) -> str:
        return f"DAVIS {self.year} {self.split}"

    def gt_masks(self, name: str) -> np.ndarray:
        """uint8 [T, H, W] ground truth; void stays 255; 2016 = binarised 2017 masks (objects -> 1)."""
        return self.video(name).load_gt()


class YouTubeVOS(_VideoSet):
    """YouTube-VOS 2018/2019 validation set, read the way the official BMVOS/EMVOS/TBD testers read it.

    ``root`` holds ``valid/{JPEGImages,Annotations}`` (the scored frames, every 5th, and the given masks)
    and ``valid_all_frames/JPEGImages`` (every frame, which the models process). Each video starts at its
    first annotated frame; frames before it are dropped. `mask_paths` holds every annotation PNG from there
    on -- in YouTube-VOS a later PNG contains only the objects entering at that frame, and it is passed to
    the models as it is (as the official testers do). `output_frames` are the positions of the
    ``valid/JPEGImages`` frames, the ones the server scores. 2018 and 2019 share this layout.

    With ``all_frames=False`` only the ``valid/JPEGImages`` frames are processed (no valid_all_frames
    download needed; not what the papers report).
    """

    YEARS = (2018, 2019)

    def __init__(self, root: PathLike, year: Union[int, str] = 2018, split: str = "valid",
                 all_frames: bool = True) -> None:
        self.root = Path(root)
        self.year = int(year)
        self.split = split
        self.all_frames = all_frames
        if self.year not in self.YEARS:
            raise UserError(f"YouTube-VOS year must be 2018 or 2019, got {year}")
        if split not in ("valid", "val"):
            raise UserError(f"only the YouTube-VOS 'valid' split is supported for testing, got {split!r}")
        _require_dir(self.root, f"YouTube-VOS {self.year} root",
                     f"download it from {YTVOS_URL} and pass the folder holding valid/ and valid_all_frames/")
        self.valid_images = self.root / "valid" / "JPEGImages"
        self.annotations = self.root / "valid" / "Annotations"
        self.all_images = self.root / "valid_all_frames" / "JPEGImages" if all_frames else self.valid_images
        _require_dir(self.valid_images, "YouTube-VOS valid frames", "extract valid.zip into the root")
        _require_dir(self.annotations, "YouTube-VOS valid annotations", "extract valid.zip into the root")
        _require_dir(self.all_images, "YouTube-VOS all-frames folder",
                     "extract valid_all_frames.zip into the root (or pass all_frames=False to process only the "
                     "scored frames, which is not what the papers report)")
        # The official testers list the videos of valid/Annotations.
        self.names: List[str] = sorted(n for n in os.listdir(self.annotations)
                                       if not n.startswith(".") and (self.annotations / n).is_dir())
        if not self.names:
            raise UserError(f"no videos in {self.annotations}; extract valid.zip into {self.root}")
        meta_path = self.root / "valid" / "meta.json"
        self.meta: Optional[dict] = read_json(meta_path, "re-extract valid.zip") if meta_path.is_file() else None
        self._videos = {name: self._scan(name) for name in self.names}

    def _scan(self, name: str) -> Video:
        all_dir, valid_dir, mask_dir = self.all_images / name, self.valid_images / name, self.annotations / name
        _require_dir(all_dir, f"frames of video {name}", "re-extract valid_all_frames.zip (or valid.zip)")
        _require_dir(valid_dir, f"scored frames of video {name}", "re-extract valid.zip")
        all_frames, valid_frames, masks = _stems(all_dir, ".jpg"), _stems(valid_dir, ".jpg"), _stems(mask_dir, ".png")
        if not masks:
            raise UserError(f"video {name} has no annotation in {mask_dir}; re-extract valid.zip")
        missing = sorted(set(valid_frames) - set(all_frames))
        if missing:
            raise UserError(f"video {name}: scored frames {missing[:3]} of {valid_dir} are missing from {all_dir}; "
                            f"re-extract valid_all_frames.zip")
        missing = sorted(set(masks) - set(valid_frames))
        if missing:
            raise UserError(f"video {name}: annotations {missing[:3]} in {mask_dir} have no frame in {valid_dir}; "
                            f"re-extract valid.zip")
        all_frames.sort(key=_frame_order)
        first = min(masks, key=_frame_order)
        start = all_frames.index(first)
        frames = all_frames[start:]
        position = {stem: i for i, stem in enumerate(frames)}
        check_annotation_sizes(all_dir / f"{frames[0]}.jpg", [mask_dir / f"{m}.png" for m in sorted(masks)])
        scored = set(valid_frames)
        return Video(name=name,
                     frame_paths=[all_dir / f"{f}.jpg" for f in frames],
                     frame_names=frames,
                     mask_paths={position[m]: mask_dir / f"{m}.png" for m in sorted(masks, key=_frame_order)},
                     output_frames=[i for i, f in enumerate(frames) if f in scored],
                     binarize_masks=False,
                     gt_paths=None)

    def _describe(self) -> str:
        return f"YouTube-VOS {self.year} valid"


class COCO:
    """COCO converted for VOS pre-training, as the EMVOS/TBD loaders expect it.

    ``root/JPEGImages/<id>.jpg`` with ``root/Annotations/<id>.png`` (palette PNG of instance ids). The
    official loaders zip the two sorted file lists; here pairs are matched by name and a missing partner
    is an error, so a lost file cannot shift every later pair. Behaves like the list of
    ``(image path, annotation path)`` pairs.
    """

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        _require_dir(self.root, "COCO root", "pass the folder holding JPEGImages/ and Annotations/ (COCO images "
                                             "with instance masks saved as palette PNGs)")
        image_dir, mask_dir = self.root / "JPEGImages", self.root / "Annotations"
        _require_dir(image_dir, "COCO images folder", "the COCO root must contain JPEGImages/*.jpg")
        _require_dir(mask_dir, "COCO annotations folder", "the COCO root must contain Annotations/*.png")
        images, masks = _stems(image_dir, ".jpg"), _stems(mask_dir, ".png")
        if not images:
            raise UserError(f"no .jpg images in {image_dir}")
        unpaired = sorted(set(images) ^ set(masks))
        if unpaired:
            name = unpaired[0]
            where = mask_dir / f"{name}.png" if name in set(images) else image_dir / f"{name}.jpg"
            raise UserError(f"{len(unpaired)} COCO images/annotations have no partner, e.g. {where} is missing; "
                            f"every JPEGImages/<id>.jpg needs Annotations/<id>.png")
        self.pairs: List[Tuple[Path, Path]] = [(image_dir / f"{n}.jpg", mask_dir / f"{n}.png") for n in images]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Tuple[Path, Path]:
        return self.pairs[index]

    def __iter__(self) -> Iterator[Tuple[Path, Path]]:
        return iter(self.pairs)
