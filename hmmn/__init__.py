"""HMMN: Hierarchical Memory Matching Network (Seong et al., ICCV 2021). See hmmn/README.md."""

TITLE = "HMMN"  # the name tables and progress lines print

from hmmn import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
