"""gis package."""

TITLE = "GIS-RAmap"  # the name tables and progress lines print

from gis import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
