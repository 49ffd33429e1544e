"""The cross-paper tools: they import the five paper packages plainly (`vos.papers`) and use them only
through the contract each one fulfils (`vos.contract`).

    python -m vos.segment   one clip, one paper          python -m vos.compare   one clip, every paper
    python -m vos.demo      the sample, every paper      python -m vos.bench     speed per paper and mode
    python -m vos.verify    ours vs the authors' masks   python -m vos.weights / vos.precomputed   downloads
"""
