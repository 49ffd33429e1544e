"""GIS-RAmap (Heo et al., CVPR 2021): guided interactive video object segmentation with reliability-based
attention maps, scribble by scribble, round after round.

Modules:

* `checkpoints`        its official checkpoints and the authors' released results (registered in `common.hub`)
* `model`              the network (`GISNet`, the official `NET_GAmap`) and `load_model(weights, device)`
* `fast`               `FastGIS`, the `--fast` path: each frame encoded once for all objects
* `ivos`               the interactive loop: interaction channels, propagation, RS1/RS4 (`GISSession`)
* `davis_frames`       DAVIS frames checked before a session and decoded where the reference decodes them
* `framework`          davisinteractive helpers (sequences it does not know)
* `session_progress`   resuming an interrupted DAVIS session sequence by sequence
* `ivos_main_davis`    the DAVIS 2017 interactive benchmark (`python -m gis.ivos_main_davis`)
* `youtube_session`    the YouTube-IVOS protocol (reconstructed); `data/` its validation list and clicks
* `ivos_main_youtube`  YouTube-IVOS (`python -m gis.ivos_main_youtube`)
* `reproduce`          `make reproduce-gis`: ours vs the paper's table (`PUBLISHED`)
* `demo`               `make demo` / `make bench` on the synthetic sample (`run_demo`, `bench_round`)
* `app/`               the browser GUI: real-world evaluation and custom videos (`python -m gis.app`)
"""

TITLE = "GIS-RAmap"  # the name tables and progress lines print

from gis import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
