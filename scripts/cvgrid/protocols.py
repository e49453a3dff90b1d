"""The same grid under two CV protocols (cv.groups and cv.compare_groups: e.g. random stratified
folds and participant-grouped folds), side by side.

Its own module because it reads a raced summary (cvgrid.race), and cvgrid.summary, which the
race's statistics import, must not import the race."""

from __future__ import annotations

import pandas as pd

from cvgrid.grid import axes_of
from cvgrid.race import COMPLETED
from cvgrid.summary import MetricsError

SIDES = ("primary", "compared")


def compare_protocols(primary: pd.DataFrame, compared: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Two cv_summary.tsv of the same grid: each grid point's mean and 2 x std under both, the
    difference (compared - primary) and its rank under both (over all models, 1 = highest
    mean). The folds differ between protocols, so the differences are not paired; the facts
    dict says whether the ranking changes (Spearman correlation of the means, same best grid
    point or not).

    With cv.race (a ``race`` column, cvgrid.race.mark_race), a point stopped under a protocol
    has a mean over its first folds only there, which is not comparable with a full one. The
    table keeps it, with ``race_primary`` and ``race_compared``, but it has no rank under that
    protocol, no difference, and is in neither the mean difference nor the rank correlation:
    those are over the points that completed every fold under both (facts ``points_compared``;
    ``left_out``: the others, with their ``race`` under each). Each protocol's best is the best
    of its completed points. Rows: the points compared, by primary rank, then the others."""
    from scipy.stats import spearmanr

    keys = axes_of(primary)
    raced = any("race" in side for side in (primary, compared))
    columns = [*keys, "mean_accuracy", "acc_std_x2", *(["race"] if raced else [])]
    # A summary without a race (a protocol run before cv.race was set) completed every point.
    primary, compared = (side if "race" in side or not raced else side.assign(race=COMPLETED)
                         for side in (primary, compared))
    table = primary[columns].merge(compared[columns], on=keys, suffixes=("_primary", "_compared"))
    if len(table) != len(primary) or len(table) != len(compared):
        raise MetricsError("the two protocols' summaries do not hold the same grid points")
    complete = {side: table[f"race_{side}"] == COMPLETED if raced else pd.Series(True, index=table.index)
                for side in SIDES}
    both = complete["primary"] & complete["compared"]
    table["difference"] = (table["mean_accuracy_compared"] - table["mean_accuracy_primary"]).where(both)
    for side in SIDES:
        means = table[f"mean_accuracy_{side}"].where(complete[side])
        table[f"rank_{side}"] = means.rank(ascending=False, method="min").astype("Int64")
    table = (table.assign(_left_out=~both).sort_values(["_left_out", "rank_primary", "rank_compared"],
                                                       kind="stable", na_position="last", ignore_index=True)
             .drop(columns="_left_out"))
    both = table["difference"].notna()
    best = {side: table.loc[table[f"rank_{side}"].idxmin(), keys].to_dict() for side in SIDES}
    shared = table[both]
    # Rank correlation needs three grid points or more; None (JSON null) below that.
    rho = (float(spearmanr(shared["mean_accuracy_primary"], shared["mean_accuracy_compared"]).statistic)
           if len(shared) > 2 else None)
    facts = {
        "mean_difference": float(shared["difference"].mean()) if len(shared) else None,
        "spearman_rank_correlation": rho,
        "same_best": best["primary"] == best["compared"],
        "best_primary": best["primary"],
        "best_compared": best["compared"],
        "points_compared": len(shared),
        "left_out": table.loc[~both, [*keys, *(f"race_{side}" for side in SIDES if raced)]].to_dict("records"),
    }
    return table, facts
