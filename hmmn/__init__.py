"""HMMN: Hierarchical Memory Matching Network for Video Object Segmentation (Seong et al., ICCV 2021).

The package fulfils the paper contract of `vos.contract` (see hmmn/README.md):

    hmmn.checkpoints   the official checkpoint and released results (registered in `common.hub` on import)
    hmmn.model         `HMMN`, the network (state_dict identical to the official `HMMN()`), and
                       `load_model(weights, device)`
    hmmn.fast          `FastHMMN(model, FastOptions)`, fast mode (`--fast`, `--precision`, `--compile`)
    hmmn.inference     upstream's `Run_video` loop (`propagate`) with a growing memory; `segment_video`,
                       `make_segmenter`, `FRAME_ENCODER`
    hmmn.eval_davis    `python -m hmmn.eval_davis`, upstream's tester flags, through `run_sets`
    hmmn.reproduce     `make reproduce-hmmn`: official weights against the paper's `PUBLISHED` table
    hmmn.demo          `run_demo`, the `make demo` part
    hmmn.viz           `-viz`: overlay frames and an mp4 per sequence
    hmmn.train         `python -m hmmn.train`: the reconstructed training (hmmn/README.md "Training")
    hmmn.training      the clip forward, loss, schedule and `HMMNTrainer` on the shared trainer
    hmmn.training_data static-image and video clips, their augmentation and memory-frame sampling
    hmmn.options       the training flags' numbers, importable without torch
"""

TITLE = "HMMN"  # the name tables and progress lines print

from hmmn import checkpoints  # noqa: E402,F401  (registers the checkpoints and released results in common.hub)
