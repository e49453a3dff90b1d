"""The statistics of one run: the tables of :mod:`cvgrid.stats` computed from cv_folds.tsv and
cv_summary.tsv at the config's :class:`~cvgrid.stats.Thresholds`, and written as
``stats/<name>.tsv``. One function, so that the workflow (scripts/cv_statistics.py) and the
published study (scripts/publish_study.py, tests/test_study.py) compute the same thing. The
words about these tables are :mod:`cvgrid.wording`'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cvgrid.io import write_tsv
from cvgrid.stats import (
    Thresholds,
    compare_models,
    compare_to_best,
    factor_effects,
    repeat_noise,
    repeat_noise_by_model,
    resolution,
)
from cvgrid.summary import mixed_hardware, selected_points


@dataclass(frozen=True)
class Analysis:
    """Everything the statistics step computes for one run.

    ``tables``: name -> table, each written as ``stats/<name>.tsv`` (compare_to_best,
    compare_models, resolution, selected, factor_effects, repeat_noise); ``noise_by_model``:
    :func:`~cvgrid.stats.repeat_noise_by_model` of repeat_noise (in the summary only);
    ``diverged``: the rows of cv_folds.tsv whose training diverged (none if the table lacks
    the column); ``mixed_hardware``: :func:`~cvgrid.summary.mixed_hardware` (grid points whose
    folds ran on different GPU models or precisions); ``cv_summary`` and ``thresholds`` as given."""

    thresholds: Thresholds
    cv_summary: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    noise_by_model: pd.DataFrame
    diverged: pd.DataFrame
    mixed_hardware: pd.DataFrame


def analyse(folds: pd.DataFrame, cv_summary: pd.DataFrame, thresholds: Thresholds) -> Analysis:
    """Every table of the statistics step from cv_folds.tsv (`folds`) and cv_summary.tsv."""
    to_best = compare_to_best(folds, thresholds, by_model=True)
    tables = {
        "compare_to_best": to_best,
        "compare_models": compare_models(folds, thresholds),
        "resolution": resolution(to_best, folds, thresholds),
        "selected": selected_points(cv_summary),
        "factor_effects": factor_effects(folds, alpha=thresholds.alpha),
        "repeat_noise": repeat_noise(folds),
    }
    diverged = folds[folds["diverged"]] if "diverged" in folds else folds.iloc[0:0]
    return Analysis(thresholds=thresholds, cv_summary=cv_summary, tables=tables,
                    noise_by_model=repeat_noise_by_model(tables["repeat_noise"]), diverged=diverged,
                    mixed_hardware=mixed_hardware(folds))


def write_tables(analysis: Analysis, out_dir: str | Path) -> None:
    """Each of the analysis' tables as out_dir/<name>.tsv."""
    for name, table in analysis.tables.items():
        write_tsv(table, Path(out_dir) / f"{name}.tsv")
