"""Make `davisinteractive` 1.0.4 run on today's numpy, networkx, pandas and scikit-image.

davisinteractive (the DAVIS interactive benchmark framework) was last released in 2019. Its code is
unchanged here; `apply()` adapts the few library interfaces it relies on that have since been removed
or changed. None of these adaptations changes what the framework computes:

1. numpy 1.24 removed the `np.int` / `np.float` aliases (used for dtypes all over the framework)
   and numpy 2.0 removed `np.trapz` (the AUC of the session summary). They are restored as the
   builtins `int` / `float` and as `np.trapezoid`, which is what they always meant.
2. networkx 3.0 removed `from_scipy_sparse_matrix` (the robot's skeleton graph); its successor
   `from_scipy_sparse_array` builds the same graph.
3. pandas 2 made `DataFrameGroupBy.mean()` raise on non-numeric columns instead of silently
   dropping them, and `pd.concat` onto the storage's initial empty report now keeps every column
   as `object` dtype. `EvaluationService.summarize_report` averages the report grouped by
   interaction/sequence/scribble/object while the string `session_id` column is still there (it
   drops it only afterwards). The report is therefore handed over without `session_id` and with
   its numeric columns as numbers, which is what pandas < 2 gave it.
4. scikit-image 0.19 changed `medial_axis` to break ties between equally distant skeleton pixels
   with an *unseeded* generator, which makes the scribble robot non-deterministic. The robot is
   given the old behaviour: a fixed `np.random.RandomState(0)` permutation, as scikit-image < 0.19
   (the version the benchmark was built and published with) used.

Call `apply()` (idempotent) before importing davisinteractive, or simply use
`import_davisinteractive()`. Nothing in site-packages is edited.
"""
from __future__ import annotations

import contextlib
import functools
from types import ModuleType
from typing import Iterator

import numpy as np

_applied = False


def _patch_numpy() -> None:
    if not hasattr(np, "int"):
        np.int = int  # type: ignore[attr-defined]
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]


def _patch_networkx() -> None:
    import networkx as nx

    if not hasattr(nx, "from_scipy_sparse_matrix"):
        nx.from_scipy_sparse_matrix = nx.from_scipy_sparse_array  # type: ignore[attr-defined]


@contextlib.contextmanager
def _legacy_medial_axis_tiebreak() -> Iterator[None]:
    """Within the block, `np.random.default_rng(...)` returns `RandomState(0)`.

    scikit-image's `medial_axis` draws its tie-break permutation with
    `np.random.default_rng(rng).permutation(...)`; `RandomState(0).permutation` is exactly the
    draw of scikit-image < 0.19. The replacement is undone when the block ends.
    """
    original = np.random.default_rng
    np.random.default_rng = lambda *args, **kwargs: np.random.RandomState(0)  # type: ignore[assignment]
    try:
        yield
    finally:
        np.random.default_rng = original  # type: ignore[assignment]


def _patch_robot_medial_axis() -> None:
    from davisinteractive.robot import interactive_robot
    from skimage.morphology import medial_axis

    if getattr(interactive_robot.medial_axis, "_legacy_tiebreak", False):
        return

    @functools.wraps(medial_axis)
    def seeded_medial_axis(image, mask=None, return_distance=False):
        with _legacy_medial_axis_tiebreak():
            return medial_axis(image, mask=mask, return_distance=return_distance)

    seeded_medial_axis._legacy_tiebreak = True  # type: ignore[attr-defined]
    interactive_robot.medial_axis = seeded_medial_axis


def _patch_summarize_report() -> None:
    from davisinteractive.evaluation.service import EvaluationService

    original = EvaluationService.summarize_report
    if getattr(original, "_numeric_only", False):
        return

    @functools.wraps(original)
    def summarize_report(self, df):
        import pandas as pd

        df = df.drop(columns=["session_id"], errors="ignore")
        for column in df.columns:
            if column != "sequence":
                df[column] = pd.to_numeric(df[column])
        return original(self, df)

    summarize_report._numeric_only = True  # type: ignore[attr-defined]
    EvaluationService.summarize_report = summarize_report


def apply() -> None:
    """Install every adaptation once; later calls do nothing."""
    global _applied
    if _applied:
        return
    _patch_numpy()
    _patch_networkx()
    _patch_robot_medial_axis()
    _patch_summarize_report()
    _applied = True


def import_davisinteractive() -> ModuleType:
    """`apply()` then return the `davisinteractive` package, with a clear error when it is missing."""
    try:
        apply()
        import davisinteractive
    except ImportError as err:
        from common.runtime.errors import UserError

        raise UserError(f"davisinteractive is not installed ({err}); run `make setup`, which installs "
                        "davisinteractive==1.0.4 without its outdated pins") from err
    return davisinteractive
