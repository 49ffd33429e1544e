"""The ground floor every paper package stands on; it knows no paper by name.

    data/        datasets, label PNGs, clips, overlays, result folders, the synthetic sample
    evaluation/  J and F, the davis2017-evaluation protocol, its worker pool, mask agreement
    inference/   video -> model inputs, the benchmark-set runner, the fast-mode options, reproduce tables
    hub/         registries of checkpoints and released results, the cache and checked downloads
    runtime/     devices, torchrun, one-line user errors
    modeling/    network pieces two or more papers share
    training/    the shared trainer, clip sampling and augmentation
"""
