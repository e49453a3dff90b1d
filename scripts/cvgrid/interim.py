"""An interim summary of a run that is still going, from the training jobs finished so far.

It reads the run's files and writes only into its own folder (results/interim/ by default):
no Snakemake (whose lock and metadata belong to the run), no torch (it runs on a SLURM login
node beside the controller). A job's metrics.json is written last and atomically
(cvgrid.io), so one that exists belongs to a finished job. Every file written has
``.interim.`` in its name, and the page says at its top that it is interim: which grid points
have all their folds, which have k of n, and verdicts for the complete points only, each
against the best *complete* point of its model."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from cvgrid.grid import fold_keys, grid_axes, grid_table, sampled_ranges
from cvgrid.io import atomic_path, write_tsv
from cvgrid.metrics import unavailable_notes
from cvgrid.summary import complete_points, cv_summary, fold_table

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


def expected_jobs(config: dict, root: str = "results") -> pd.DataFrame:
    """One row per training job of the run's grid: its axes, repeat, fold and the path of its
    metrics.json relative to the working directory (the paths of the workflow's rules)."""
    from snakemake.utils import Paramspace

    points = grid_table(config)
    rows = []
    for (_, point), folder in zip(points.iterrows(), Paramspace(points).instance_patterns):
        for repeat, fold in fold_keys(config):
            rows.append({**point.to_dict(), "repeat": repeat, "fold": fold,
                         "metrics": f"{root}/train/{folder}/repeat~{repeat}/fold~{fold}/metrics.json"})
    return pd.DataFrame(rows)


def progress_table(jobs: pd.DataFrame, done: pd.Series, axes: list[str]) -> pd.DataFrame:
    """Per grid point: folds finished, folds in all, and its state (complete, k of n folds,
    not started), in grid order."""
    counts = jobs.assign(done=done.to_numpy()).groupby(axes, sort=False)["done"].agg(folds_done="sum", folds="size")
    counts = counts.reset_index()
    counts["state"] = [
        "complete" if d == n else "not started" if d == 0 else f"{d} of {n} folds"
        for d, n in zip(counts["folds_done"], counts["folds"])
    ]
    return counts


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


def interim_protocol(workdir: Path, config: dict, root: str, out: Path, written_at: str) -> dict:
    """The interim files of one protocol (results/ or results/compare/) into `out`; returns its facts."""
    from cvgrid import analysis, wording
    from cvgrid.stats import Thresholds

    axes = grid_axes(config)
    jobs = expected_jobs(config, root)
    done = jobs["metrics"].map(lambda path: (Path(workdir) / path).is_file())
    progress = progress_table(jobs, done, axes)
    write_tsv(progress, out / "progress.interim.tsv")
    pairs = len(fold_keys(config))
    facts = {"jobs_finished": int(done.sum()), "jobs": len(jobs),
             "points_complete": int((progress["state"] == "complete").sum()), "points": len(progress)}
    lines = [f"**INTERIM: the run is still going.** Written {written_at} from the {facts['jobs_finished']} of "
             f"{facts['jobs']} training jobs finished then ({root}/train/). Every figure here will change as "
             f"jobs finish; the run's result is {root}/stats/summary.html when it ends."]
    named = varying(progress, axes)
    complete = progress[progress["state"] == "complete"]
    partial = progress[progress["state"] != "complete"]
    lines.append(f"**Complete grid points** ({len(complete)} of {len(progress)}, all {pairs} folds): "
                 + ("; ".join(point_name(row, named) for _, row in complete.iterrows()) or "none yet") + ".")
    if len(partial):
        lines.append("**Not complete** (no verdict until all their folds are in): "
                     + "; ".join(f"{point_name(row, named)}: {row['state']}" for _, row in partial.iterrows()) + ".")
    if facts["jobs_finished"]:
        folds = fold_table([Path(workdir) / path for path in jobs.loc[done, "metrics"]], axes)
        write_tsv(folds, out / "cv_folds.interim.tsv")
        lines += [f"Note: {note}." for note in unavailable_notes(folds)]
        finished, _ = complete_points(folds, pairs, axes)
        if not finished.empty:
            summary = cv_summary(finished, metric=config["statistics"]["metric"])
            write_tsv(summary, out / "cv_summary.interim.tsv")
            result = analysis.analyse(finished, summary, Thresholds.from_config(config["statistics"]),
                                      contender_probability=config["statistics"]["contender_probability"],
                                      choose=config["final"]["choose"], cost=config["final"]["cost"],
                                      ranges=sampled_ranges(config))
            for name, table in result.tables.items():
                write_tsv(table, out / f"{name}.interim.tsv")
            lines.append("**The verdicts below are over the complete grid points only**: each is compared "
                         "with the best complete point of its model, which a point still running may beat.")
            lines.append(wording.summary_text(result))
    if facts["points_complete"] == 0:
        lines.append("No grid point has all its folds yet: no verdict.")
    text = "\n\n".join(lines)
    with atomic_path(out / "summary.interim.html") as tmp:
        tmp.write_text(wording.summary_html(text, title=f"INTERIM summary ({written_at}): the run is still going"))
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
