"""GIS-RAmap (CVPR 2021): its official checkpoints and the authors' released results, registered in `common.hub`.

Importing the package registers them (`gis/__init__.py`); `OFFICIAL_WEIGHTS` is the checkpoint the tools
load by default (DAVIS). sha256 is None wherever no official hash exists and the file could not be downloaded
to compute one.
"""
from __future__ import annotations

from common.hub.checkpoints import CHECKPOINT_REGISTRY, WeightSpec
from common.hub.results import RESULTS_REGISTRY, ResultsSpec

OFFICIAL_WEIGHTS = "gis-davis"
GIS_COMMIT = "281529bab2674bf14380c177e10dd0c36d89ff72"  # yuk6heo/GIS-RAmap master, 2022-04-20
GIS_DAVIS = "results/test_result_davisframework"
GIS_YOUTUBE = "results/test_result_youtube/GIS-RAmap[JF]_[wo_RS]"

CHECKPOINTS = CHECKPOINT_REGISTRY.register(
    WeightSpec(
        name="gis-davis", paper="gis", dataset="davis",
        description="GIS-RAmap (CVPR 2021) model for the DAVIS 2017 interactive benchmark",
        filename="GIS-ckpt_standard.pth", drive_id="1dkgXJJ2gPYDtPE9yTtlP4Th0iNX5ZG6a",
        aliases=("ckpt_standard.pth",),  # the name IVOS_main_DAVIS.py actually opens
        source="yuk6heo/GIS-RAmap README 'For DAVIS2017 evaluation'; file name from README and config.py",
    ),
    WeightSpec(
        name="gis-youtube", paper="gis", dataset="ytvos",
        description="GIS-RAmap model trained without the YouTube-IVOS evaluation videos, for YouTube-VOS 2019",
        filename="GIS-ckpt_wo_YTIVOStrainset.pth", drive_id="1m52fHwoYt2zupSmqgvDYUTqB24ApX0my",
        aliases=("ckpt_wo_YTIVOStrainset.pth",),  # the name IVOS_main_youtube.py actually opens
        source="yuk6heo/GIS-RAmap README 'For youtube2019 evaluation'; file name from config.py",
    ),
)

RELEASED_RESULTS = RESULTS_REGISTRY.register(
    ResultsSpec(
        name="gis", paper="gis",
        description="GIS-RAmap (CVPR 2021) interactive-evaluation summaries (DAVIS framework and YouTube-iVOS)",
        url=f"https://codeload.github.com/yuk6heo/GIS-RAmap/zip/{GIS_COMMIT}",
        source=f"yuk6heo/GIS-RAmap README 'root/results : result files for both evaluation results are "
               f"attached', committed in the repository (downloaded as GitHub's archive of {GIS_COMMIT[:8]})",
        summary_files=tuple(
            [f"{GIS_DAVIS}/GIS-RAmap[{metric}]_[{guide}]/{name}" for metric, guide, stamp in (
                ("JF", "RS4", "20201104_033839"), ("JF", "wo_RS", "20210121_012946"),
                ("J", "RS4", "20201105_024900"), ("J", "wo_RS", "20201025_175130"))
             for name in (f"summary_{stamp}.json", "summary_in_csv.csv")]
            + [f"{GIS_YOUTUBE}/iPoint{n:02d}/{name}" for n in (5, 10, 20, 50)
               for name in ("summary.json", "summary_in_csv.csv")]
            + [f"{GIS_YOUTUBE}/summary_total.json"]),
    ),
)
