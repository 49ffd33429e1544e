"""The words GIS-RAmap's command lines offer, importable without torch (`--help` must not wait for the model)."""

from common.data.palette import VOID_LABEL

GUIDE_METHODS = ("wo_RS", "RS1", "RS4")  # frame recommendation after a round: none, RS1, RS4

FAST_HELP = ("fast inference: each frame encoded once for all objects, image features cached across rounds, "
             "bf16 head on CUDA/AMX CPUs, channels_last on CUDA (masks equal up to rounding)")

TAB_TIMEOUT_S = 180.0  # gis.app: a tab not heard of for this long (its browser died) frees its sequence
MAX_OBJECTS = VOID_LABEL - 1  # ids 1..254: 0 is background and 255 void in the DAVIS palette
