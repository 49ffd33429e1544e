"""The parity adapters take every input a fixture records and check every output it does not omit.

Fixtures beyond the public ones call the official video entries with a real `val_frame_ids` list
(YouTube-VOS) or leave outputs out (`meta['omitted_outputs']`). Such fixtures are derived here from
the public ones by the official semantics and saved and reloaded as the recorder stores them:

* `val_frame_ids` only selects which frames are output (frame 0 and frames with a given mask always
  are; frame i otherwise iff `val_frame_ids[0] + i` is in the list), so the per-call tensors stay the
  recorded ones and the masks are the recorded masks of the selected frames;
* GIS rounds are sequential, so the first round of the `rounds` fixture is a fixture of its own.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, List

import pytest
import torch

from tests.parity import harness as H, test_bmvos, test_emvos, test_gis, test_tbd

# The thread counts the video fixtures' own test modules use (BMVOS and EMVOS were recorded with 2);
# GIS's module keeps the default, one thread keeps its derived round cheap.
THREADS = {"bmvos": 2, "emvos": 2, "tbd": 1, "gis": 1}


def run_video_adapter(paper: str) -> Callable[[H.Case], None]:
    if paper == "emvos":
        model = test_emvos.EMVOS()
        H.fill_(model)
        return lambda case: test_emvos.check_video(model.to(H.DEVICE).eval(), case)
    return {"bmvos": test_bmvos.check_video, "tbd": test_tbd.check_video}[paper]


def saved_and_loaded(case: H.Case, tmp_path: Path) -> H.Case:
    path = tmp_path / f"{case['meta']['case']}.pt"
    torch.save(case, path)
    return H.load_case(path)


def with_val_frame_ids(case: H.Case, val_frame_ids: List[int]) -> H.Case:
    derived = copy.deepcopy(case)
    n_frames = case["inputs"]["frames"].shape[0]
    given = set(case["inputs"]["given_masks"])
    kept = [i for i in range(n_frames) if i == 0 or i in given or val_frame_ids[0] + i in val_frame_ids]
    derived["meta"].update(case=f"{case['meta']['case']}_val_frame_ids", val_frame_ids=str(val_frame_ids))
    derived["inputs"]["val_frame_ids"] = list(val_frame_ids)
    derived["outputs"]["masks"] = case["outputs"]["masks"][:, kept]
    derived["outputs"]["out_frame_ids"] = kept
    return derived


@pytest.fixture
def threads_of():
    previous = torch.get_num_threads()
    yield lambda paper: torch.set_num_threads(THREADS[paper])
    torch.set_num_threads(previous)


@pytest.mark.parametrize("paper", ["bmvos", "emvos", "tbd"])
def test_video_adapter_passes_val_frame_ids(paper, tmp_path, threads_of):
    threads_of(paper)
    recorded = H.load_case(H.parity_dir(paper) / "video_2obj.pt")
    derived = saved_and_loaded(with_val_frame_ids(recorded, [10, 12, 13, 14]), tmp_path)
    assert derived["outputs"]["out_frame_ids"] == [0, 2, 3, 4]
    # Without the list the model would output all 5 frames, and the adapter would fail.
    run_video_adapter(paper)(derived)


def test_omitted_outputs_are_absent_and_the_rest_is_checked(tmp_path, threads_of):
    threads_of("tbd")
    case = H.load_case(H.parity_dir("tbd") / "video_2obj.pt")
    case["meta"]["omitted_outputs"] = ["matching_scores", "prev_seg_16", "sds"]
    case["outputs"]["matching_scores"] = []  # a placeholder: not recorded
    del case["outputs"]["prev_seg_16"], case["outputs"]["sds"]
    case = saved_and_loaded(case, tmp_path)
    test_tbd.check_video(case)
    case["outputs"]["final_scores"][1] = case["outputs"]["final_scores"][1] + 0.1
    with pytest.raises(AssertionError, match=r"final_scores\[1\]"):
        test_tbd.check_video(case)


def test_an_input_the_adapter_does_not_pass_fails_the_case():
    case = H.load_case(H.parity_dir("emvos") / "video_pad.pt")
    case["inputs"]["dist"] = torch.zeros(1)  # EMVOS's entry takes no distance matrix
    with pytest.raises(pytest.fail.Exception, match=r"inputs \['dist'\]"):
        H.video_call(case)
    assert torch.equal(H.video_call(case, extra=("dist",)).extra["dist"].cpu(), case["inputs"]["dist"])


def test_val_frame_ids_from_meta_text():
    case = H.load_case(H.parity_dir("bmvos") / "video_pad.pt")
    assert H.video_call(case).val_frame_ids is None  # meta 'None'
    case["meta"]["val_frame_ids"] = "[5, 7]"
    assert H.video_call(case).val_frame_ids == [5, 7]


def test_gis_rounds_adapter_without_iact_3ch(tmp_path, threads_of):
    threads_of("gis")
    case = H.load_case(H.parity_dir("gis") / "rounds.pt")
    first_round = copy.deepcopy(case)
    first_round["meta"].update(case="rounds_1", n_rounds=1, omitted_outputs=["iact_3ch"])
    del first_round["outputs"]["iact_3ch"]
    for name, value in case["outputs"].items():
        if name != "iact_3ch":
            first_round["outputs"][name] = value[:1]
    first_round["inputs"]["annotated_frames"] = case["inputs"]["annotated_frames"][:1]
    H.dispatch(saved_and_loaded(first_round, tmp_path), test_gis.ADAPTERS)
