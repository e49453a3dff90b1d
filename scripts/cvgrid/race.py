"""Racing (cv.race): every grid point trains its first `after_folds` folds; then, fold round by
fold round, the points that the verdicts call *worse* than their model's best on the folds
every survivor has are dropped, and only the survivors train the next fold.

One round is one Snakemake checkpoint (workflow/rules/race.smk) writing a race table
(:func:`race_round`): every grid point, whether it still races or was stopped and after how
many folds, and the round's comparison. All survivors have the same folds, so the comparisons
stay paired; the verdicts are :func:`cvgrid.stats.compare_to_best`'s, per model, at the
config's thresholds. The current best is never dropped (its verdict is *best*), and a dropped
point stays dropped: it is in no later round.

After the race, cv_folds.tsv and cv_summary.tsv hold every trained fold and every point, with a
``race`` column (:func:`mark_race`); the final statistics run on the points that completed every
fold (:func:`completed`). Planning-time helpers (:func:`race_after_folds`, :func:`survivors`)
import neither scipy nor torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cvgrid.grid import ConfigError, axes_of
from cvgrid.metrics import summary_columns

#: A race table's ``status``: the point trains the next fold, or it was dropped.
RACING, STOPPED = "racing", "stopped"
#: cv_summary.tsv's and cv_folds.tsv's ``race`` for a point that trained every fold.
COMPLETED = "completed"


def stopped_label(folds: int) -> str:
    """The ``race`` of a point dropped after `folds` folds."""
    return f"stopped early: worse after {folds} folds"


def race_after_folds(config: dict) -> int | None:
    """cv.race.after_folds, checked against the rest of the config; None when racing is off."""
    race = config["cv"].get("race")
    if not race:
        return None
    after = race["after_folds"]
    folds = config["cv"]["folds"]
    if not 2 <= after < folds:
        raise ConfigError(
            f"cv.race.after_folds is {after}; it must be at least 2 (a verdict needs paired differences on"
            f" two folds) and less than cv.folds ({folds}), so that a round is left to race"
        )
    if config["cv"]["repeats"] != 1:
        raise ConfigError(
            f"cv.race is set with cv.repeats {config['cv']['repeats']}: a race adds one fold per round, and"
            " with repeats the survivors' folds would not be the same pairs in every round; race with"
            " cv.repeats: 1 (or remove cv.race)"
        )
    if config["training"]["folds_per_job"] != 1:
        raise ConfigError(
            f"cv.race is set with training.folds_per_job {config['training']['folds_per_job']!r}: a race"
            " decides fold by fold which points train on, so each fold must be its own job"
            " (training.folds_per_job: 1)"
        )
    if config["cv"].get("decide"):
        raise ConfigError(
            "cv.race and cv.decide are both set: racing stops points fold by fold, cv.decide adds repeats"
            " to undecided ones, and the two would plan the same points' jobs by different rules; set one"
        )
    return after


def point_folder(metrics_path: str | Path) -> str:
    """The grid point's folder of a training job's metrics.json (``model~a/batch_size~16/...``,
    the part between ``train/`` and ``/repeat~R/fold~F/metrics.json``): what names the point in
    the workflow, never a number parsed back from text."""
    parts = Path(metrics_path).parts
    return "/".join(parts[parts.index("train") + 1:-3])


def race_round(folds: pd.DataFrame, folders: pd.DataFrame, thresholds, previous: pd.DataFrame | None = None
               ) -> pd.DataFrame:
    """One round of the race: the race table after comparing the survivors on their folds.

    `folds`: cv_folds rows (cvgrid.summary.fold_table) of every survivor's folds 0..k-1 (one
    repeat); `folders`: the grid axes and ``point`` (:func:`point_folder`) of each survivor;
    `previous`: the race table of the round before (None in the first round, where every grid
    point races). Returns one row per grid point: its axes, ``point``, ``status``
    (:data:`RACING`: it trains fold k; :data:`STOPPED`), ``stopped_after`` (the folds it had when
    it was dropped; empty while it races), ``round`` (k, the folds compared in the row's round),
    then that round's comparison with its model's best (cvgrid.stats.compare_to_best:
    the metric's mean over the k folds, ``is_best``, ``verdict``, ``mean_diff``, ``prob_worse``).
    Points stopped in an earlier round keep their row from that round."""
    from cvgrid.stats import WORSE, compare_to_best  # scipy: only where a round is computed, not when planning

    keys = axes_of(folds)
    fold_sets = folds.groupby(keys)["fold"].agg(lambda f: tuple(sorted(f)))
    k = len(fold_sets.iloc[0])
    if set(folds["repeat"]) != {0} or any(f != tuple(range(k)) for f in fold_sets):
        raise ValueError(f"a race round needs folds 0..{k - 1} of repeat 0 for every survivor; got {fold_sets.to_dict()}")
    verdicts = compare_to_best(folds, thresholds, by_model=True)
    mean = summary_columns(thresholds.metric)[0]
    table = verdicts[[*keys, mean, "is_best", "verdict", "mean_diff", "prob_worse"]].merge(folders, on=keys)
    if len(table) != len(verdicts):
        raise ValueError("the survivors' folders do not match their metrics (every survivor needs its point folder)")
    dropped = (table["verdict"] == WORSE) & ~table["is_best"]
    table["status"] = np.where(dropped, STOPPED, RACING)
    table["stopped_after"] = pd.array([k if d else pd.NA for d in dropped], dtype="Int64")
    table["round"] = k
    table = table[[*keys, "point", "status", "stopped_after", "round", mean, "is_best", "verdict", "mean_diff",
                   "prob_worse"]]
    if previous is not None:
        gone = previous[previous["status"] == STOPPED]
        again = set(gone["point"]) & set(table["point"])
        if again:
            raise ValueError(f"points dropped earlier are in round {k}: {sorted(again)}")
        if set(previous.loc[previous["status"] == RACING, "point"]) != set(table["point"]):
            raise ValueError(f"round {k} compares other points than the survivors of the round before")
        table = pd.concat([table, gone.astype({"stopped_after": "Int64"})], ignore_index=True)
    return table


def replay_race(folds: pd.DataFrame, folders: pd.DataFrame, thresholds, after_folds: int, total_folds: int
                ) -> list[pd.DataFrame]:
    """The race tables of rounds `after_folds` .. `total_folds` - 1 that a race over these jobs
    runs, by :func:`race_round` as the workflow's checkpoints do: `folds` (cv_folds rows of
    repeat 0) must hold at least every fold the race trains (a full run's folds, or a raced
    run's own); `folders`: every grid point's axes and ``point``. What a race would have saved
    on a finished grid, or a published race checked against its jobs."""
    keys = axes_of(folds)
    folds = folds[folds["repeat"] == 0]
    rounds: list[pd.DataFrame] = []
    for k in range(after_folds, total_folds):
        racing = folders if not rounds else folders[folders["point"].isin(survivors_of(rounds[-1]))]
        rounds.append(race_round(folds[folds["fold"] < k].merge(racing[keys], on=keys), racing, thresholds,
                                 rounds[-1] if rounds else None))
    return rounds


def survivors_of(table: pd.DataFrame) -> list[str]:
    """The point folders that race on after the round of this race table."""
    return table.loc[table["status"] == RACING, "point"].tolist()


def read_race(path: str | Path) -> pd.DataFrame:
    """A race table as :func:`race_round` wrote it."""
    return pd.read_csv(path, sep="\t", dtype={"stopped_after": "Int64"})


def survivors(path: str | Path) -> list[str]:
    """The point folders that race on after the round of this race table (they train its fold)."""
    return survivors_of(read_race(path))


def stopped_points(table: pd.DataFrame) -> dict[str, int]:
    """The point folders a race table stopped, each with the folds it had then (it trains no
    more): what a later round cannot change, as a stopped point is in no later round."""
    gone = table[table["status"] == STOPPED]
    return {point: int(folds) for point, folds in zip(gone["point"], gone["stopped_after"])}


def mark_race(table: pd.DataFrame, record: pd.DataFrame) -> pd.DataFrame:
    """cv_folds.tsv or cv_summary.tsv with a ``race`` column from the race's last table
    `record`: :data:`COMPLETED`, or :func:`stopped_label` of the folds the point had. In a
    summary (a ``rank`` column), only the completed points are ranked (stopped ones: empty,
    after the completed ones, best first as before): a partial mean is not comparable with a
    full one, and rank 1 is the point the final model refits."""
    keys = axes_of(table)
    labels = record[keys].assign(race=[COMPLETED if pd.isna(s) else stopped_label(int(s))
                                       for s in record["stopped_after"]])
    marked = table.merge(labels, on=keys, how="left", validate="many_to_one")
    if marked["race"].isna().any():
        missing = marked.loc[marked["race"].isna(), keys].drop_duplicates().to_dict("records")
        raise ValueError(f"grid points trained but not in the race table: {missing[:3]}")
    if "rank" in marked:
        done = marked["race"] == COMPLETED
        marked = pd.concat([marked[done], marked[~done]], ignore_index=True)
        ranks = marked[marked["race"] == COMPLETED].groupby("model", sort=False).cumcount() + 1
        marked["rank"] = pd.array([pd.NA] * len(marked), dtype="Int64")
        marked.loc[ranks.index, "rank"] = ranks.to_numpy()
    return marked


def completed(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the points that trained every fold: all of them without a race."""
    if "race" not in table:
        return table
    return table[table["race"] == COMPLETED].reset_index(drop=True)


def race_savings(folds: pd.DataFrame, total_folds: int) -> dict:
    """What racing saved, from cv_folds.tsv with its ``race`` column: ``points``, ``full``
    (points x folds: the jobs of the full grid), ``run`` (the jobs trained), ``saved``
    (full - run) and ``stopped`` (the stopped points' rows of one per point: axes, ``race``,
    ``folds`` they have)."""
    keys = axes_of(folds)
    per_point = folds.groupby(keys, sort=False).agg(folds=("fold", "size"), race=("race", "first")).reset_index()
    full = len(per_point) * total_folds
    return {"points": len(per_point), "full": full, "run": len(folds), "saved": full - len(folds),
            "stopped": per_point[per_point["race"] != COMPLETED].reset_index(drop=True)}
