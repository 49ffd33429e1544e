"""GIS-RAmap in the browser: the real-world evaluation GUI on DAVIS 2017 val and custom videos.

`python -m gis.app --davis data/DAVIS` serves the evaluation (a person scribbles, the model
propagates, per-object CSV rows with the reference GUI's time definitions);
`python -m gis.app --video clip.mp4` segments a video without ground truth and exports the masks.

Modules: `evaluation` (sequences, CSV rows, round timing), `media` (custom videos, image encoding,
exports), `session` (one browser tab: strokes -> scribbles -> `GISSession` rounds), `server` (the
Starlette app), `__main__` (the command line).
"""
