"""The numbers `python -m hmmn.train` offers as flags, importable without torch (`--help` must not wait for it).
Their sources are in hmmn/README.md ("Training")."""

SEED = 14159265       # STCN's train.py seed (HMMN's is unknown)
MEMORY_DROPOUT = 0.5  # Hongje/HMMN issue 1: `if random.random() < 0.5` around the read-out in Refine
MIN_CROP = 96         # /8 top-32 needs >= 32 cells at /16: 96x96 gives 6x6 = 36
STAGES = ("coco", "main")
