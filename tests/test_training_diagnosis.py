"""tools/training_diagnosis.py: the clips keep every object's label, and the measures tell objectness from identity."""
from __future__ import annotations

import random

import torch

from common.data.synthetic import make_davis_sample
from common.training.clips import davis_train_clips
from tools import training_diagnosis as diagnosis


def test_kept_labels_are_the_frames_objects(tmp_path):
    root = make_davis_sample(tmp_path / "DAVIS", n_videos=1, n_train=2, n_objects=2)
    _, _, recipe = diagnosis.paper_parts("tbd")
    dataset = davis_train_clips(root, recipe, 8, rng=random.Random(0))
    dataset.augment = diagnosis._KeepLabels(recipe)
    for i in range(8):
        clip = dataset[i]
        labels, target = clip["labels"][:, 0], clip["masks"][:, 0] == 1
        assert labels.shape == target.shape
        ids = labels[0][target[0]].unique()
        assert len(ids) == 1 and ids.item() > 0  # the first frame's target is one object of the kept labels
        assert torch.equal(target, labels == ids.item())  # ... in every frame


def _clip(labels: torch.Tensor, target_id: int) -> dict:
    """A 2-frame clip of `labels` [H, W] (both frames), following object `target_id`."""
    labels = labels.expand(2, 1, *labels.shape).clone()
    return {"imgs": torch.zeros(2, 3, *labels.shape[-2:]), "masks": (labels == target_id).long(), "labels": labels}


def test_measures_tell_objectness_from_identity():
    labels = torch.zeros(4, 8, dtype=torch.long)
    labels[:, :2], labels[:, 4:6] = 1, 2  # two objects of 8 pixels each
    clips = [_clip(labels, 1)]

    def marks(pred):  # a forward that predicts `pred` [H, W] as the target of frame 1
        return lambda model, imgs, masks: torch.stack([~pred, pred]).float().expand(imgs.shape[0], 1, 2, 4, 8)

    exact = diagnosis.diagnose(None, marks(labels == 1), clips)
    assert exact["model target IoU"] == 1.0 and exact["target pixels found"] == 1.0
    assert exact["predicted target pixels on another object"] == 0.0
    every = diagnosis.diagnose(None, marks(labels > 0), clips)  # knows the objects, not which one
    assert every["model target IoU"] == every["objectness baseline IoU (every object marked)"] == 0.5
    assert every["predicted target pixels on some object"] == 1.0
    assert every["predicted target pixels on another object"] == 0.5
    wrong = diagnosis.diagnose(None, marks(labels == 2), clips)
    assert wrong["target pixels found"] == 0.0 and wrong["predicted target pixels on another object"] == 1.0
