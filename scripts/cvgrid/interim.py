"""An interim summary of a run that is still going, from the training jobs finished so far.

It reads the run's files and writes only into its own folder (results/interim/ by default):
no Snakemake (whose lock and metadata belong to the run), no torch (it runs on a SLURM login
node beside the controller). A job's metrics.json is written last and atomically
(cvgrid.io), so one that exists belongs to a finished job. Every file written has
``.interim.`` in its name, and the page says at its top that it is interim: which grid points
have all their folds, which have k of n, and verdicts for the complete points only, each
against the best *complete* point of its model.

The jobs it expects are those the run plans as far as its rounds have decided (:func:`run_plan`):
cv.race's round tables (results/race/fold~k.tsv) stop points, whose later folds never run;
cv.decide's (results/decide/repeat~r.tsv) add repeats to some points. While a later round can
still change them, the page says so."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from cvgrid.grid import decide_max_repeats, fold_keys, grid_axes, grid_table, sampled_ranges
from cvgrid.io import atomic_path, write_tsv
from cvgrid.metrics import unavailable_notes
from cvgrid.race import race_after_folds, read_race, stopped_label, stopped_points
from cvgrid.summary import cv_summary, fold_table

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# The Snakefile's `configfile:`, which Snakemake reads relative to the working directory.
WORKFLOW_CONFIG = Path("config") / "config.yaml"
# What the workflow writes under results/: an interim folder must be none of these.
RUN_FOLDERS = ("train", "stats", "plots", "diagnostics", "final", "data", "checkpoints", "compare")


class InterimError(ValueError):
    pass


def _update(config: dict, overwrite: dict) -> None:
    """Snakemake's update_config: nested dicts are merged, anything else replaced."""
    for key, value in overwrite.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _update(config[key], value)
        else:
            config[key] = copy.deepcopy(value)


def run_config(workdir: Path, configfiles=(), overrides=()) -> dict:
    """The config a `snakemake -d WORKDIR --configfile F... --config K=V...` run has: the
    workflow's config/config.yaml in the working directory (if there), updated by each
    configfile in turn, then by each K=V (a YAML value), validated with the schema's defaults."""
    from snakemake.utils import validate

    config = {}
    for path in [Path(workdir) / WORKFLOW_CONFIG] if (Path(workdir) / WORKFLOW_CONFIG).exists() else []:
        _update(config, yaml.safe_load(path.read_text()) or {})
    for path in configfiles:
        try:
            _update(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as error:
            raise InterimError(f"cannot read config file {path}: {error}") from error
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InterimError(f"--config {item!r} is not KEY=VALUE")
        _update(config, {key: yaml.safe_load(value)})
    validate(config, schema=str(SCHEMA))
    return config


def protocol_roots(config: dict) -> list[str]:
    """The results folder of each CV protocol of the run (cv.compare_groups adds results/compare)."""
    return ["results"] + (["results/compare"] if config["cv"]["compare_groups"] != "none" else [])


def run_result(root: str) -> str:
    """What the finished run writes for the protocol of `root`: results/ gets the statistics;
    results/compare/ (cv.compare_groups) only its summary, beside results/ in the comparison."""
    if root == "results":
        return "results/stats/summary.html"
    return f"{root}/cv_summary.tsv and results/stats/protocol_comparison.tsv"


def job_metrics(root: str, point: str, repeat: int, fold: int) -> str:
    """A training job's metrics.json relative to the working directory (the workflow's path)."""
    return f"{root}/train/{point}/repeat~{repeat}/fold~{fold}/metrics.json"


def expected_jobs(config: dict, root: str = "results") -> pd.DataFrame:
    """One row per training job of the run's grid, its configured repeats: its axes, ``point``
    (the point's folder, as the workflow names it), repeat, fold and the path of its
    metrics.json relative to the working directory (the paths of the workflow's rules)."""
    from snakemake.utils import Paramspace

    points = grid_table(config)
    rows = []
    for (_, point), folder in zip(points.iterrows(), Paramspace(points).instance_patterns):
        for repeat, fold in fold_keys(config):
            rows.append({**point.to_dict(), "point": folder, "repeat": repeat, "fold": fold,
                         "metrics": job_metrics(root, folder, repeat, fold)})
    return pd.DataFrame(rows)


@dataclass
class RunPlan:
    """The training jobs of one protocol as far as the run's rounds have decided them."""

    jobs: pd.DataFrame  # expected_jobs' columns: the jobs that have run or will
    stopped: dict[str, int] = field(default_factory=dict)  # cv.race: point folder -> folds it had when stopped
    pending: str = ""  # what a later round may still change (empty: nothing can)
    notes: list[str] = field(default_factory=list)  # what the rounds written so far decided


def run_plan(workdir: Path, config: dict, root: str = "results") -> RunPlan:
    """The run's planned jobs under `root`: the grid's (:func:`expected_jobs`), less the folds
    that cv.race's rounds stopped, plus the repeats that cv.decide's rounds added."""
    jobs = expected_jobs(config, root)
    after = race_after_folds(config)
    if after:
        return raced_plan(Path(workdir), config, root, jobs, after)
    most = decide_max_repeats(config)
    if most:
        return decided_plan(Path(workdir), config, root, jobs, most)
    return RunPlan(jobs)


def raced_plan(workdir: Path, config: dict, root: str, jobs: pd.DataFrame, after: int) -> RunPlan:
    """cv.race (rules/race.smk): the last round written names every point it or an earlier round
    stopped (cvgrid.race.stopped_points); their later folds never run."""
    folds = config["cv"]["folds"]
    written = []
    for k in range(after, folds):  # round k exists only once round k - 1 does
        if not (workdir / root / "race" / f"fold~{k}.tsv").is_file():
            break
        written.append(k)
    if not written:
        return RunPlan(jobs, pending="a later race round may stop points", notes=[
            f"**Race** (cv.race): no round yet. Every grid point trains its first {after} folds; then the"
            f" round after {after} folds and each later one stop the points called worse, so fewer jobs than"
            " counted here may run."])
    last = written[-1]
    stopped = stopped_points(read_race(workdir / root / "race" / f"fold~{last}.tsv"))
    keep = [fold < stopped.get(point, folds) for point, fold in zip(jobs["point"], jobs["fold"])]
    jobs = jobs[keep].reset_index(drop=True)
    racing = jobs["point"].nunique() - len(stopped)
    note = (f"**Race** (cv.race): the rounds after {after}" + (f" to {last}" if last > after else "")
            + f" folds are written ({root}/race/): {len(stopped)} grid point(s) stopped early, their later folds"
            f" never run; {racing} train on.")
    if last == folds - 1:
        return RunPlan(jobs, stopped, notes=[note + f" The race is over: those {racing} train all {folds} folds."])
    return RunPlan(jobs, stopped, pending="a later race round may stop points", notes=[
        note + f" The round after {last + 1} folds is still to come and may stop more of them, so fewer jobs"
        " than counted here may run."])


def decided_plan(workdir: Path, config: dict, root: str, jobs: pd.DataFrame, most: int) -> RunPlan:
    """cv.decide (rules/decide.smk): each round's table written so far adds its repeat to the
    points it names (cvgrid.decision.decided_rounds, the workflow's walk over the rounds)."""
    from cvgrid.decision import decided_rounds

    def written(repeat):
        path = workdir / root / "decide" / f"repeat~{repeat}.tsv"
        return path if path.is_file() else None

    first = config["cv"]["repeats"]
    rounds = list(decided_rounds(range(first, most), written))
    axes_of_point = jobs.drop_duplicates("point").set_index("point").drop(columns=["repeat", "fold", "metrics"])
    added, notes = [], []
    for repeat, table, points in rounds:
        unknown = sorted(set(points) - set(axes_of_point.index))
        if unknown:
            raise InterimError(f"{table} gives repeat {repeat} to grid points not in this config's grid: {unknown[:3]}")
        added += [{**axes_of_point.loc[point].to_dict(), "point": point, "repeat": repeat, "fold": fold,
                   "metrics": job_metrics(root, point, repeat, fold)}
                  for point in points for fold in range(config["cv"]["folds"])]
        notes.append(f"repeat {repeat} to {len(points)} grid point(s)" if points else f"repeat {repeat} to none")
    if added:
        order = {point: i for i, point in enumerate(axes_of_point.index)}  # grid order, then repeat
        jobs = pd.concat([jobs, pd.DataFrame(added)], ignore_index=True)
        jobs = jobs.sort_values(["point", "repeat", "fold"], key=lambda c: c.map(order) if c.name == "point" else c,
                                kind="stable", ignore_index=True)
    text = (f"**Added repeats** (cv.decide, up to {most} repeats): "
            + (f"the rounds written ({root}/decide/) gave {'; '.join(notes)}." if rounds else "no round yet."))
    over = (rounds and not rounds[-1][2]) or len(rounds) == most - first
    if over:
        return RunPlan(jobs, notes=[text + " No later round adds a repeat."])
    coming = first + len(rounds)
    return RunPlan(jobs, pending="a later cv.decide round may add repeats", notes=[
        text + f" The round for repeat {coming} comes when the points in play have finished repeat {coming - 1},"
        " and may add it to the undecided ones, so more jobs than counted here may run."])


def progress_table(jobs: pd.DataFrame, done: pd.Series, axes: list[str], stopped: dict[str, int] | None = None
                   ) -> pd.DataFrame:
    """Per grid point: folds finished, folds in all (its planned jobs), and its state
    (complete, k of n folds, not started, or cvgrid.race.stopped_label for a point that
    `stopped` names: it has all the folds it will get), in grid order."""
    stopped = stopped or {}
    counts = jobs.assign(done=done.to_numpy()).groupby(axes, sort=False).agg(
        folds_done=("done", "sum"), folds=("done", "size"), point=("point", "first")).reset_index()
    counts["state"] = [
        stopped_label(stopped[p]) if p in stopped else "complete" if d == n else "not started" if d == 0
        else f"{d} of {n} folds"
        for d, n, p in zip(counts["folds_done"], counts["folds"], counts["point"])
    ]
    return counts.drop(columns="point")


def check_out_dir(workdir: Path, out: Path) -> None:
    """The interim folder must not be one the run writes."""
    workdir, out = Path(workdir).resolve(), Path(out).resolve()
    results = workdir / "results"
    if out == results or out == workdir or any(out == results / name or (results / name) in out.parents
                                                for name in RUN_FOLDERS):
        raise InterimError(f"--out {out} is a folder the run writes; choose another (default results/interim)")


def point_name(row, axes) -> str:
    return ", ".join(f"{key} {row[key]}" for key in axes)


def varying(progress: pd.DataFrame, axes: list[str]) -> list[str]:
    """The axes whose values differ between grid points (all of them for a grid of one point)."""
    return [key for key in axes if progress[key].nunique() > 1] or axes


def complete_rows(folds: pd.DataFrame, complete: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The rows of `folds` (cv_folds) of the `complete` points (progress rows): the points that
    have every job the run plans for them, however many (cv.decide adds repeats to some)."""
    rows = folds[pd.MultiIndex.from_frame(folds[axes]).isin(pd.MultiIndex.from_frame(complete[axes]))]
    if len(rows) != int(complete["folds"].sum()):  # the metrics.json settings are not the grid's values
        raise InterimError(f"the finished jobs of the {len(complete)} complete grid points hold {len(rows)} rows, "
                           f"not {int(complete['folds'].sum())}: their metrics.json settings differ from the config's")
    return rows.reset_index(drop=True)


def interim_protocol(workdir: Path, config: dict, root: str, out: Path, written_at: str) -> dict:
    """The interim files of one protocol (results/ or results/compare/) into `out`; returns its facts."""
    from cvgrid import analysis, wording
    from cvgrid.stats import Thresholds

    axes = grid_axes(config)
    plan = run_plan(workdir, config, root)
    jobs = plan.jobs
    done = jobs["metrics"].map(lambda path: (Path(workdir) / path).is_file())
    progress = progress_table(jobs, done, axes, plan.stopped)
    write_tsv(progress, out / "progress.interim.tsv")
    pairs = len(fold_keys(config))
    facts = {"jobs_finished": int(done.sum()), "jobs": len(jobs),
             "points_complete": int((progress["state"] == "complete").sum()), "points": len(progress),
             "points_stopped": len(plan.stopped), "pending": plan.pending}
    facts["training_complete"] = not plan.pending and facts["jobs_finished"] == facts["jobs"]
    if facts["training_complete"]:
        lines = [f"**INTERIM: the run's training is finished.** Written {written_at}, when all {facts['jobs']} "
                 f"training jobs the run plans had finished ({root}/train/); the run's result is "
                 f"{run_result(root)} once its statistics are written."]
    else:
        lines = [f"**INTERIM: the run is still going.** Written {written_at} from the {facts['jobs_finished']} of "
                 f"{facts['jobs']} training jobs finished then ({root}/train/). Every figure here will change as "
                 f"jobs finish; the run's result is {run_result(root)} when it ends."]
    lines += plan.notes
    named = varying(progress, axes)
    stopped = progress["state"].isin([stopped_label(folds) for folds in plan.stopped.values()])
    complete = progress[progress["state"] == "complete"]
    partial = progress[(progress["state"] != "complete") & ~stopped]
    every = (f"all {pairs} folds" if not decide_max_repeats(config)
             else f"all their folds: {pairs}, and {config['cv']['folds']} more for each repeat cv.decide added")
    lines.append(f"**Complete grid points** ({len(complete)} of {len(progress)}, {every}): "
                 + ("; ".join(point_name(row, named) for _, row in complete.iterrows()) or "none yet") + ".")
    if stopped.any():
        lines.append(f"**Stopped by the race** ({int(stopped.sum())} of {len(progress)}; no more folds, and no "
                     "verdict: a mean over fewer folds is not comparable with the complete points'): "
                     + "; ".join(f"{point_name(row, named)}: {row['state']}" for _, row in progress[stopped].iterrows())
                     + ".")
    if len(partial):
        lines.append("**Not complete** (no verdict until all their folds are in): "
                     + "; ".join(f"{point_name(row, named)}: {row['state']}" for _, row in partial.iterrows()) + ".")
    if facts["jobs_finished"]:
        folds = fold_table([Path(workdir) / path for path in jobs.loc[done, "metrics"]], axes)
        write_tsv(folds, out / "cv_folds.interim.tsv")
        lines += [f"Note: {note}." for note in unavailable_notes(folds)]
        finished = complete_rows(folds, complete, axes)
        if not finished.empty:
            summary = cv_summary(finished, metric=config["statistics"]["metric"])
            write_tsv(summary, out / "cv_summary.interim.tsv")
            result = analysis.analyse(finished, summary, Thresholds.from_config(config["statistics"]),
                                      contender_probability=config["statistics"]["contender_probability"],
                                      choose=config["final"]["choose"], cost=config["final"]["cost"],
                                      ranges=sampled_ranges(config))
            for name, table in result.tables.items():
                write_tsv(table, out / f"{name}.interim.tsv")
            if len(partial):
                lines.append("**The verdicts below are over the complete grid points only**: each is compared "
                             "with the best complete point of its model, which a point still running may beat.")
            else:
                lines.append("**The verdicts below are over the complete grid points**"
                             + (", not the points the race stopped" if stopped.any() else "") + ".")
            lines.append(wording.summary_text(result))
    if facts["points_complete"] == 0:
        lines.append("No grid point has all its folds yet: no verdict.")
    text = "\n\n".join(lines)
    with atomic_path(out / "summary.interim.html") as tmp:
        state = "training finished" if facts["training_complete"] else "the run is still going"
        tmp.write_text(wording.summary_html(text, title=f"INTERIM summary ({written_at}): {state}"))
    with atomic_path(out / "summary.interim.md") as tmp:
        tmp.write_text(text + "\n")
    return facts


def write_interim(workdir: Path, config: dict, out: Path, now: datetime | None = None) -> dict:
    """The interim summary of every protocol of the run in `workdir`: `out` for results/,
    `out`/compare for results/compare/. Returns {root: facts}."""
    check_out_dir(workdir, out)
    written_at = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    return {root: interim_protocol(workdir, config, root, Path(out) / Path(root).relative_to("results"), written_at)
            for root in protocol_roots(config)}
