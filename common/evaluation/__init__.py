"""Scores: the region and boundary measures (`metrics`), the davis2017-evaluation protocol over a results
folder (`evaluate`, `python -m common.evaluation.evaluate`), the process pool it scores sequences in
(`workers`), and the agreement of two result folders (`agree`)."""
