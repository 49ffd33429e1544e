"""HMMN (ICCV 2021): its official checkpoints and the authors' released results, registered in `common.hub`.

Importing the package registers them (`hmmn/__init__.py`); `OFFICIAL_WEIGHTS` is the checkpoint the tools
load by default (DAVIS). sha256 is None wherever no official hash exists and the file could not be downloaded
to compute one.
"""
from __future__ import annotations

from common.hub.checkpoints import CHECKPOINT_REGISTRY, WeightSpec
from common.hub.results import RESULTS_REGISTRY, ResultsSpec

OFFICIAL_WEIGHTS = "hmmn"

def _released(set_name: str, label: str, current: str, initial: str) -> ResultsSpec:
    return ResultsSpec(
        name=f"hmmn-{set_name}", paper="hmmn", description=f"HMMN (ICCV 2021) results on {label}",
        sets=(set_name,), sets_confirmed=True, drive_ids=(current, initial),
        source=f"Hongje/HMMN README 'Pre-computed Results' [{label}]: link of commit a138cd80 ('Update links', "
               f"2022-07-05), then the link of the initial README (76a6b63, 2021-09-24)",
    )


CHECKPOINTS = CHECKPOINT_REGISTRY.register(
    WeightSpec(
        name="hmmn", paper="hmmn", dataset="davis",
        description="HMMN (ICCV 2021) model; the official eval_DAVIS.py uses it for DAVIS 2016 and 2017",
        # The README's first link (1Vm4Hf6hCdIAXdLQDWiTG8DWn4RAyD8oT) was replaced by this one on 2022-07-05.
        filename="HMMN_weights.pth", drive_id="16vOMm7hIdmC6yL4FlBO4p_miTeUoskt7",
        module_prefix=True,  # eval_DAVIS.py loads it into nn.DataParallel(HMMN())
        source="Hongje/HMMN README 'Trained model'; eval_DAVIS.py loads HMMN_weights.pth",
    ),
)

RELEASED_RESULTS = RESULTS_REGISTRY.register(
    _released("davis16-val", "DAVIS-16-val", "1SqzBktU0DrSd5_vC7TVmPtXJBn3bqAfG", "1s1qEUnLP8eEt64mxDv4VieZW0cEW09_u"),
    _released("davis17-val", "DAVIS-17-val", "1uDx8rPo91qEnoE_nBCYF-A-G8noRq6G8", "1ZNbdME0SG5WIn1BoBnfQ9IkEFt4xmLA6"),
    _released("davis17-test-dev", "DAVIS-17-test-dev", "18-p2ihxfHZisOghWiSpvlfbhpy1j1oSl",
          "1Fr50S37X0erJBEfWhNmU06tKIgSZvy3P"),
    _released("ytvos18-valid", "YouTube-VOS-18-valid", "1cE9rtqdafXGm7V3rP2ZSXq56atoXVUg3",
          "1dx3pbKQlp-80eekgp3i1leKXv_Jqv2JJ"),
    _released("ytvos19-valid", "YouTube-VOS-19-valid", "1bA2iv2KhjYGlw5i25dLPf24byt-5On2r",
          "10yu-HqXCQLQlLt0ZIlwfQ4cKW71OzndQ"),
)
