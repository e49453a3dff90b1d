#!/usr/bin/env python
"""The reference study (config/study.yaml) as published results under docs/study/, or another
experiment run the same way (config/modern_recipe.yaml -> docs/recipe/, with --config and
--published).

    python scripts/publish_study.py restore --workdir W   # committed jobs -> W/results (resume)
    python scripts/publish_study.py publish --workdir W   # W's jobs and tables -> docs/study
    python scripts/publish_study.py publish --workdir W --config config/modern_recipe.yaml --published docs/recipe
    python scripts/publish_study.py publish-decide --workdir W   # cv.decide's run -> docs/study/decide
    python scripts/publish_study.py publish-race --workdir W --config config/search.yaml --published docs/search
                                                            # the raced run (config/search-race.yaml) -> docs/search/raced

`restore` copies the training jobs already published (docs/study/jobs/) into the working
directory, so that a Snakemake run there trains only the missing ones: run it after the data
steps (prepare_dataset, make_folds), so that the restored files are newer than their inputs.
`publish` copies every finished job's small files (metrics.json, history.tsv, predictions.tsv)
into docs/study/jobs/ and writes, for each protocol, cv_folds.tsv, cv_summary.tsv, the
statistics tables, the written summary and the heatmap, computed by the library from the
finished grid points only (a grid still running is published as far as it has got; the
unfinished points are listed in provenance.json), plus the protocol comparison and
provenance.json (config, commits, machine, minutes). `make study` runs the whole cycle.
`publish-decide` publishes a run of config/study.yaml with config/study-decide.yaml (cv.decide on
the stratified grid, whose first repeat is the published stratified jobs) in docs/study/decide:
the jobs of the repeats it added, its rounds and its tables. `publish-race` publishes a raced run
(--config with the --race overlay on top) in <published>/raced: its rounds and its tables; its
jobs are the full run's own.
"""

import argparse
import functools
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from cvgrid import plots, wording
from cvgrid.analysis import analyse, write_tables
from cvgrid.costs import join_costs, model_sizes, training_costs
from cvgrid.decision import CONTENDER_PROBABILITY, decide, expectation_record, prediction_table
from cvgrid.grid import axes_of, grid_axes, sampled_ranges
from cvgrid.io import write_json, write_tsv
from cvgrid.protocols import compare_protocols
from cvgrid.race import completed, mark_race, point_folder, race_savings, read_race, replay_race
from cvgrid.stats import Thresholds, bayesian_correlated_ttest, design_sizes
from cvgrid.summary import complete_points, cv_summary, fold_table, read_metrics

REPO = Path(__file__).resolve().parent.parent
JOB_FILES = ("metrics.json", "history.tsv", "predictions.tsv")
# Folder of each protocol in the working directory; in docs/study (and docs/study/jobs) a folder
# named after the protocol (not "results": .gitignore keeps results/ folders out of git).
PROTOCOLS = {"stratified": "results", "participants": "results/compare"}
LABELS = {"stratified": "stratified folds", "participants": "participant-grouped folds"}


def job_dirs(root: Path) -> list[Path]:
    """Finished training jobs below root/train (every one of JOB_FILES present)."""
    return sorted(m.parent for m in root.glob("train/**/metrics.json")
                  if all((m.parent / name).exists() for name in JOB_FILES))


def copy_jobs(source: Path, target: Path, *, added_repeats_only: bool = False) -> int:
    """Copy every finished job's files (only those of repeats after the first with
    `added_repeats_only`: cv.decide's); a copied file gets the time of the copy (not the
    source's), so that restored jobs are newer than the data steps run before them."""
    copied = 0
    for job in job_dirs(source):
        if added_repeats_only and job.parent.name == "repeat~0":
            continue
        destination = target / job.relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in JOB_FILES:
            if not (destination / name).exists() or (destination / name).read_bytes() != (job / name).read_bytes():
                shutil.copyfile(job / name, destination / name)
        copied += 1
    return copied


def restore(workdir: Path, published: Path) -> None:
    for protocol, folder in PROTOCOLS.items():
        n = copy_jobs(published / "jobs" / protocol, workdir / folder)
        print(f"{protocol}: {n} published jobs restored into {workdir / folder}")


def git_commit(path: Path) -> str | None:
    result = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or None


def publish_protocol(workdir: Path, published: Path, protocol: str, config: dict) -> dict:
    """One protocol's tables from its finished jobs; returns its facts for provenance.json."""
    folder = PROTOCOLS[protocol]
    out = published / protocol
    copy_jobs(workdir / folder, published / "jobs" / protocol)
    metrics = sorted((published / "jobs" / protocol).glob("train/**/metrics.json"))
    if not metrics:
        return {"jobs": 0}
    all_folds = fold_table(metrics, grid_axes(config))
    pairs = config["cv"]["folds"] * config["cv"]["repeats"]
    folds, unfinished = complete_points(all_folds, pairs)
    write_tsv(all_folds, out / "cv_folds.tsv")
    facts = {"jobs": len(all_folds), "grid_points_finished": int(len(folds) // pairs),
             "unfinished_grid_points": unfinished.to_dict(orient="records"),
             "training_minutes": round(float(all_folds["seconds"].sum()) / 60, 1)}
    if folds.empty:
        return facts
    summary = cv_summary(folds, metric=config["statistics"]["metric"])
    write_tsv(summary, out / "cv_summary.tsv")
    result = publish_statistics(folds, summary, config, out / "stats", metrics)
    ranges = sampled_ranges(config)  # a sampled grid (docs/search): a scatter and trends, as the workflow draws them
    for model in sorted(summary["model"].unique()):
        if ranges is None:
            plots.heatmap(summary, model, out / f"heatmap_{model}.svg", result.tables["compare_to_best"],
                          metric=result.thresholds.metric)
        else:
            plots.sampled_scatter(summary, model, out / f"heatmap_{model}.svg", result.tables["compare_to_best"],
                                  ranges=ranges, metric=result.thresholds.metric)
    plots.factor_effects(result.tables["factor_effects"], out / "stats" / "factor_effects.svg")
    if ranges is not None:
        plots.factor_trends(summary, result.tables["factor_trends"], result.tables["factor_bins"], ranges,
                            out / "stats" / "factor_trends.svg", metric=result.thresholds.metric)
    return facts


def publish_statistics(folds: pd.DataFrame, summary: pd.DataFrame, config: dict, out: Path, metrics: list[Path],
                       decide_rounds: list[pd.DataFrame] = (), raced: tuple[pd.DataFrame, pd.DataFrame] | None = None):
    """The statistics step's tables and summary in `out` (docs/study/<protocol>/stats), as the
    workflow's model_costs, expect_choice and cv_statistics rules write them, from the fold
    table and the jobs' `metrics` (predictions.tsv beside), and cv.decide's rounds where it ran;
    returns the analysis. A race: `folds` and `summary` are the completed points', `raced` the
    whole cv_folds and cv_summary with their race column (the summary's paragraph on the race)."""
    # fold_table writes one recall_<label> column per class of the data.
    num_classes = sum(column.startswith("recall_") for column in folds.columns)
    sizes = model_sizes(config, sorted(folds["model"].unique()), num_classes)
    write_tsv(sizes, out / "model_costs.tsv")
    final = {"choose": "best", "cost": "work", **config.get("final", {})}
    statistics = {"contender_probability": CONTENDER_PROBABILITY, **config["statistics"]}
    finished = folds[axes_of(folds)].drop_duplicates()
    predictions = prediction_table(metrics, axes_of(folds)).merge(finished, on=axes_of(folds))
    expectations = []
    for model in sorted(folds["model"].unique()):
        result = decide(folds, predictions, join_costs(training_costs(folds), sizes), final["choose"], final["cost"],
                        rope=statistics["rope"], probability=statistics["probability"],
                        contender_probability=statistics["contender_probability"], model=model)
        record = expectation_record(model, result)
        write_json(record, out / "expectation" / f"{model}.json")
        expectations.append(record)
    result = analyse(folds, summary, Thresholds.from_config(config["statistics"]), model_sizes=sizes,
                     contender_probability=config["statistics"].get("contender_probability", CONTENDER_PROBABILITY),
                     choose=final["choose"], cost=final["cost"], expectations=expectations,
                     ranges=sampled_ranges(config))
    write_tables(result, out)
    text = wording.summary_text(result, extra=[
        wording.race_paragraph(*raced, config["statistics"]["metric"]) if raced else None,
        wording.decide_paragraph(list(decide_rounds), result.tables["compare_to_best"], int(folds["fold"].nunique()),
                                 choose=final["choose"]),
    ])
    wording.write_summary(text, out, markdown=True)
    return result


def overlaid_config(config_path: Path, overlay: Path) -> dict:
    """config_path with the overlay on top (as `--configfile config_path overlay` merges them),
    with the schema's defaults."""
    from snakemake.utils import update_config, validate

    config = yaml.safe_load(config_path.read_text())
    update_config(config, yaml.safe_load(overlay.read_text()))
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def decide_config() -> dict:
    """The config of the study's cv.decide run."""
    return overlaid_config(REPO / "config" / "study.yaml", REPO / "config" / "study-decide.yaml")


def decide_rounds(folder: Path) -> list[pd.DataFrame]:
    """cv.decide's round tables (repeat~R.tsv) in `folder`, in order of R."""
    paths = sorted(folder.glob("repeat~*.tsv"), key=lambda path: int(path.stem.split("~")[1]))
    return [pd.read_csv(path, sep="\t") for path in paths]


def publish_decide(workdir: Path, published: Path) -> None:
    """cv.decide's run (decide_config) in published/decide: the jobs of the repeats it added (its
    first repeat is published/jobs/stratified), its rounds, and cv_folds.tsv, cv_summary.tsv,
    the statistics and the heatmap over all its jobs; provenance.json."""
    config = decide_config()
    out = published / "decide"
    added = copy_jobs(workdir / "results", out / "jobs" / "stratified", added_repeats_only=True)
    (out / "rounds").mkdir(parents=True, exist_ok=True)
    for path in sorted((workdir / "results" / "decide").glob("repeat~*.tsv")):
        shutil.copyfile(path, out / "rounds" / path.name)
    shutil.copyfile(REPO / "config" / "study-decide.yaml", out / "config.yaml")
    metrics = (sorted((published / "jobs" / "stratified").glob("train/**/metrics.json"))
               + sorted((out / "jobs" / "stratified").glob("train/**/metrics.json")))
    folds = fold_table(metrics, grid_axes(config))
    write_tsv(folds, out / "cv_folds.tsv")
    summary = cv_summary(folds, metric=config["statistics"]["metric"])
    write_tsv(summary, out / "cv_summary.tsv")
    result = publish_statistics(folds, summary, config, out / "stats", metrics, decide_rounds(out / "rounds"))
    for model in sorted(summary["model"].unique()):
        plots.heatmap(summary, model, out / f"heatmap_{model}.svg", result.tables["compare_to_best"],
                      metric=result.thresholds.metric)
    added_folds = folds[folds["repeat"] > 0]
    write_json({"config": "config.yaml (config/study-decide.yaml on top of config/study.yaml)",
                "publishing_code_commit": git_commit(REPO), "jobs_added": added,
                "training_minutes_added": round(float(added_folds["seconds"].sum()) / 60, 1),
                "machines_added": sorted({f"{m.get('cpu')} ({m.get('device')}, {m.get('precision')}, torch {m.get('torch')})"
                                          for m in (json.loads(path.read_text()) for path in
                                                    (out / "jobs").glob("**/metrics.json"))})},
               out / "provenance.json")
    print(f"decide: {added} added jobs, {len(folds)} folds in all")


def race_rounds(folder: Path) -> list[pd.DataFrame]:
    """A race's round tables (fold~K.tsv) in `folder`, in order of K."""
    paths = sorted(folder.glob("fold~*.tsv"), key=lambda path: int(path.stem.split("~")[1]))
    return [read_race(path) for path in paths]


def raced_metrics(jobs: Path, record: pd.DataFrame, folds: int) -> list[Path]:
    """The metrics.json (below `jobs`, e.g. docs/search/jobs/stratified) of every training job a
    race ran, by its last round table `record`: each point's folds up to where it stopped, the
    completed points' `folds`."""
    return [jobs / "train" / row.point / "repeat~0" / f"fold~{fold}" / "metrics.json"
            for row in record.itertuples()
            for fold in range(folds if pd.isna(row.stopped_after) else int(row.stopped_after))]


def point_folders(metrics: list[Path], axes: list[str]) -> pd.DataFrame:
    """Every grid point of these jobs' metrics.json: its axes and ``point`` (its folder), as
    cvgrid.race.replay_race takes them."""
    return pd.DataFrame([{**{k: read_metrics(path)["config"][k] for k in axes}, "point": point_folder(path)}
                         for path in metrics]).drop_duplicates(ignore_index=True)


def replayed_races(search: Path, config: dict, folds: pd.DataFrame, contenders: set, worse: set,
                   afters=(2, 3, 4)) -> list[str]:
    """What a race with each `after_folds` would have done over the full run's jobs (`folds`, its
    cv_folds.tsv; the configured thresholds; cvgrid.race.replay_race): markdown table rows of
    jobs run, points stopped, and of those how many are among the full run's `contenders` and
    its points called `worse` (sets of grid-key tuples)."""
    axes = grid_axes(config)
    folders = point_folders(sorted((search / "jobs" / "stratified").glob("train/**/metrics.json")), axes)
    total = config["cv"]["folds"]
    rows = []
    for after in afters:
        last = replay_race(folds, folders, Thresholds.from_config(config["statistics"]), after, total)[-1]
        stopped = set(map(tuple, last.loc[last["status"] == "stopped", axes].to_numpy().tolist()))
        jobs = sum(total if pd.isna(k) else int(k) for k in last["stopped_after"])
        rows.append(f"| {after} | {jobs} | {len(stopped)} | {len(stopped & contenders)} | {len(stopped & worse)} |")
    return rows


def raced_tables(jobs: Path, rounds: list[pd.DataFrame], config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """cv_folds.tsv and cv_summary.tsv of a race, with their race column, from its jobs and rounds."""
    record = rounds[-1]
    folds = fold_table(raced_metrics(jobs, record, config["cv"]["folds"]), grid_axes(config))
    summary = cv_summary(folds, metric=config["statistics"]["metric"])
    return mark_race(folds, record), mark_race(summary, record)


def publish_race(workdir: Path, published: Path, config: dict, overlay: Path) -> None:
    """A raced run (cv.race) in published/raced: its rounds, its cv_folds.tsv and cv_summary.tsv
    with the race column, the statistics of the points that completed every fold with the
    summary's paragraph on the race, and provenance.json. Its training jobs are the full run's
    own (a race changes no job): they go to published/jobs/stratified with the others."""
    out = published / "raced"
    jobs = published / "jobs" / "stratified"
    copy_jobs(workdir / "results", jobs)
    (out / "rounds").mkdir(parents=True, exist_ok=True)
    for path in sorted((workdir / "results" / "race").glob("fold~*.tsv")):
        shutil.copyfile(path, out / "rounds" / path.name)
    shutil.copyfile(overlay, out / "config.yaml")
    rounds = race_rounds(out / "rounds")
    if len(rounds) != config["cv"]["folds"] - config["cv"]["race"]["after_folds"]:
        sys.exit(f"error: {workdir}/results/race has {len(rounds)} rounds; a finished race has"
                 f" {config['cv']['folds'] - config['cv']['race']['after_folds']}")
    folds, summary = raced_tables(jobs, rounds, config)
    write_tsv(folds, out / "cv_folds.tsv")
    write_tsv(summary, out / "cv_summary.tsv")
    record = rounds[-1]
    metrics = raced_metrics(jobs, record[record["stopped_after"].isna()], config["cv"]["folds"])  # the completed points'
    result = publish_statistics(completed(folds), completed(summary), config, out / "stats", metrics,
                                raced=(folds, summary))
    ranges = sampled_ranges(config)
    for model in sorted(summary["model"].unique()):
        draw = plots.heatmap if ranges is None else functools.partial(plots.sampled_scatter, ranges=ranges)
        draw(completed(summary), model, out / f"heatmap_{model}.svg", result.tables["compare_to_best"],
             metric=result.thresholds.metric)
    savings = race_savings(folds, config["cv"]["folds"])
    write_json({"config": f"config.yaml ({overlay.name} on top of the published config.yaml)",
                "publishing_code_commit": git_commit(REPO), "jobs_run": savings["run"], "jobs_full": savings["full"],
                "points_stopped": len(savings["stopped"]),
                "training_minutes": round(float(folds["seconds"].sum()) / 60, 1)}, out / "provenance.json")
    print(f"race: {savings['run']} of {savings['full']} jobs, {len(savings['stopped'])} points stopped")
    update_search_table(published)


def beside_original(published: Path) -> None:
    """beside_original.tsv: each grid point of the original study's table (original.tsv) with
    this study's mean, fold spread and verdict under both protocols, point by point."""
    keys = ["model", "batch_size", "learning_rate", "augmentation"]
    table = pd.read_csv(published / "original.tsv", sep="\t")
    table = table[table["model"].isin(["model_a"])].rename(
        columns={"mean_accuracy": "original_mean", "acc_std_x2": "original_std_x2"})
    for protocol in PROTOCOLS:
        verdicts = published / protocol / "stats" / "compare_to_best.tsv"
        if not verdicts.exists():
            continue
        ours = pd.read_csv(published / protocol / "cv_summary.tsv", sep="\t")[keys + ["mean_accuracy", "acc_std_x2", "rank"]]
        ours = ours.merge(pd.read_csv(verdicts, sep="\t")[keys + ["verdict"]], on=keys)
        ours = ours.rename(columns={c: f"{protocol}_{c}" for c in ["mean_accuracy", "acc_std_x2", "rank", "verdict"]})
        table = table.merge(ours, on=keys, how="left")
    write_tsv(table, published / "beside_original.tsv")
    (published / "table.md").write_text(markdown_table(table))


def update_readme(table_md: str, readme: Path = REPO / "README.md", marker: str = "study table") -> None:
    """Put a published table into the README, between its two marker lines."""
    start, end = f"<!-- {marker}: written by scripts/publish_study.py -->\n", f"<!-- end of {marker} -->\n"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme} lacks the {marker}'s markers {start.strip()!r} ... {end.strip()!r}")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + table_md + rest[rest.index(end):])


def markdown_table(table: pd.DataFrame) -> str:
    """beside_original.tsv as the README's table: accuracies in percent, mean ± fold spread."""
    def cell(mean, spread):
        return "" if pd.isna(mean) else f"{100 * mean:.2f} ± {100 * spread:.2f}"

    protocols = [p for p in PROTOCOLS if f"{p}_mean_accuracy" in table.columns]
    header = ["batch size", "learning rate", "augmentation", "original (Keras)"]
    for protocol in protocols:
        header += [f"{LABELS[protocol]}", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = table.sort_values(f"{protocols[0]}_mean_accuracy" if protocols else "original_mean",
                              ascending=False, kind="stable")
    for _, r in order.iterrows():
        row = [str(r["batch_size"]), f"{r['learning_rate']:g}",
               f"{r['augmentation']} (original: {r['original_label']})",
               cell(r["original_mean"], r["original_std_x2"])]
        for protocol in protocols:
            verdict = r[f"{protocol}_verdict"]
            row += [cell(r[f"{protocol}_mean_accuracy"], r[f"{protocol}_acc_std_x2"]),
                    "" if pd.isna(verdict) else str(verdict)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


SEARCH = REPO / "docs" / "search"
STUDY = REPO / "docs" / "study"


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def _run_facts(folder: Path) -> dict:
    """What the README's search table says of one published run (docs/search/stratified, its
    raced/ or docs/study/stratified): jobs, minutes, the best point and its estimates, verdicts
    against it and contenders, from the run's published tables."""
    folds = pd.read_csv(folder / "cv_folds.tsv", sep="\t")
    summary = pd.read_csv(folder / "cv_summary.tsv", sep="\t")
    decision = pd.read_csv(folder / "stats" / "decision.tsv", sep="\t")
    decision = decision[decision["among"] != wording.WHOLE_GRID].iloc[0]
    verdicts = pd.read_csv(folder / "stats" / "compare_to_best.tsv", sep="\t")["verdict"].value_counts()
    keys = axes_of(summary)
    best = summary[summary["rank"] == 1].iloc[0]
    return {"jobs": len(folds), "minutes": float(folds["seconds"].sum()) / 60,
            "work": float((folds["epochs_run"] * folds["n_train"]).sum()) / 1e6,
            "points": len(summary), "complete": int((summary["folds"] == summary["folds"].max()).sum()),
            "best": wording.describe_point(best, keys), "best_keys": {k: best[k] for k in keys},
            "mean": f"{_percent(best['mean_accuracy'])} ± {100 * best['acc_std_x2']:.2f}",
            "corrected": _percent(decision["bound"]),
            "bbc": f"{_percent(decision['bbc_estimate'])} ({100 * decision['bbc_low']:.2f} to {100 * decision['bbc_high']:.2f})",
            "verdicts": " / ".join(str(int(verdicts.get(v, 0))) for v in ("worse", "practically equivalent", "undecided")),
            "contenders": f"{int(decision['contenders'])} of {int(decision['candidates'])}",
            "folds": folds}


def search_table(search: Path = SEARCH, study: Path = STUDY) -> str | None:
    """The README's account of the wide search (docs/search): the raced run against the full
    one, then the search's best against the study's, paired on their shared folds; None until
    both runs are finished."""
    if not (search / "raced" / "provenance.json").exists() or not (search / "stratified" / "cv_summary.tsv").exists():
        return None
    full, raced, reference = (_run_facts(f) for f in (search / "stratified", search / "raced", study / "stratified"))
    config = overlaid_config(search / "config.yaml", search / "raced" / "config.yaml")
    if full["complete"] != full["points"] or full["jobs"] != full["points"] * config["cv"]["folds"]:
        return None
    folds, after = config["cv"]["folds"], config["cv"]["race"]["after_folds"]
    rows = [("training jobs", full["jobs"], f"{raced['jobs']} ({full['jobs'] - raced['jobs']} saved)"),
            ("training work: epochs run × training images, millions (independent of machine load)",
             f"{full['work']:.2f}", f"{raced['work']:.2f} ({100 * (1 - raced['work'] / full['work']):.1f} % less)"),
            ("training minutes: the jobs' own seconds, under the load of the day (not a speed)",
             f"{full['minutes']:.0f}", f"{raced['minutes']:.0f}"),
            (f"grid points with all {folds} folds", full["complete"], raced["complete"]),
            (f"best point (highest mean over its {folds} folds)", full["best"], raced["best"]),
            ("its mean ± fold spread (2 × std): best of many, optimistic", full["mean"], raced["mean"]),
            ("corrected for the choice (Tibshirani & Tibshirani 2009)", full["corrected"], raced["corrected"]),
            ("expected accuracy, BBC-CV (95 % bootstrap interval)", full["bbc"], raced["bbc"]),
            ("others against the best: worse / practically equivalent / undecided", full["verdicts"], raced["verdicts"]),
            ("contenders (not separable from the best)", full["contenders"], raced["contenders"])]
    lines = [f"| | full: {folds} folds of every point | raced: `cv.race: {{after_folds: {after}}}` |", "|---|---|---|"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    # The stopped points as the full run judges them on all their folds, and the contenders of both.
    keys = list(full["best_keys"])
    verdicts = pd.read_csv(search / "stratified" / "stats" / "compare_to_best.tsv", sep="\t")
    worse = set(map(tuple, verdicts.loc[verdicts["verdict"] == "worse", keys].to_numpy().tolist()))
    contenders = [set(map(tuple, pd.read_csv(folder / "stats" / "contenders.tsv", sep="\t")[keys].to_numpy().tolist()))
                  for folder in (search / "stratified", search / "raced")]
    raced_summary = pd.read_csv(search / "raced" / "cv_summary.tsv", sep="\t")
    judged = raced_summary.loc[raced_summary["race"] != "completed", keys].merge(verdicts, on=keys)
    stopped = set(map(tuple, judged[keys].to_numpy().tolist()))
    not_worse = judged[judged["verdict"] != "worse"]
    lines += ["", f"The race stopped {len(judged)} points after {after} folds, each *worse* than the best there. On "
              f"all {folds} folds (the full run) {len(stopped & worse)} of them are *worse*"
              + "".join(f"; {wording.describe_point(r, keys)} is {r['verdict']} (P(worse) {r['prob_worse']:.2f}, "
                        f"{100 * r['mean_diff']:+.1f} points)" for _, r in not_worse.iterrows())
              + f". Contenders of the full run among the stopped points: {len(stopped & contenders[0])}; the "
              f"full run's contenders are {'the same as' if contenders[0] == contenders[1] else 'not the same as'} "
              "the raced run's."]
    lines += ["", "The same jobs raced with another `after_folds` (replayed by `cvgrid.race.replay_race`, the "
              "configured thresholds):", "",
              "| after_folds | training jobs | points stopped | of them contenders of the full run "
              f"| of them *worse* on all {folds} folds |", "|---|---|---|---|---|",
              *replayed_races(search, config, full["folds"], contenders[0], worse)]
    # The two bests on the same folds (the search runs the study's cv: settings): per-fold differences.
    pair = []
    for facts in (full, reference):
        table = facts["folds"]
        chosen = table.loc[(table[list(facts["best_keys"])] == pd.Series(facts["best_keys"])).all(axis=1)]
        pair.append(chosen.set_index(["repeat", "fold"]).sort_index())
    if not (pair[0]["n_test"] == pair[1]["n_test"]).all():
        raise SystemExit("docs/search and docs/study do not share their folds: their bests cannot be paired")
    diffs = (pair[0]["accuracy"] - pair[1]["accuracy"]).to_numpy()
    n_train, n_test = design_sizes(pair[0].reset_index())
    rope = config["statistics"]["rope"]
    test = bayesian_correlated_ttest(diffs, n_train, n_test, rope)
    lines += ["", f"| | study: {reference['points']} points of model A | wide search: {full['points']} points |",
              "|---|---|---|",
              f"| best point | {reference['best']} | {full['best']} |",
              f"| its mean ± fold spread: best of many, optimistic | {reference['mean']} | {full['mean']} |",
              f"| corrected for the choice | {reference['corrected']} | {full['corrected']} |",
              f"| expected accuracy, BBC-CV (95 % bootstrap interval) | {reference['bbc']} | {full['bbc']} |",
              "",
              f"The search's best minus the study's best on the same {folds} folds: {100 * test['mean_diff']:+.2f} points "
              f"(per fold {', '.join(f'{100 * d:+.2f}' for d in diffs)}); Bayesian correlated t-test, ROPE "
              f"±{100 * rope:g} points: P(better by more) {test['p_right']:.2f}, P(within) {test['p_rope']:.2f}, "
              f"P(worse by more) {test['p_left']:.2f}.", ""]
    return "\n".join(lines)


def update_search_table(published: Path) -> None:
    """docs/search/table.md and the README's copy of it, once both runs of the search are finished."""
    if published.resolve() != SEARCH:
        return
    table = search_table(published)
    if table is not None:
        (published / "table.md").write_text(table)
        update_readme(table, marker="search table")


def publish(workdir: Path, published: Path, config_path: Path) -> None:
    from snakemake.utils import validate

    config = yaml.safe_load(config_path.read_text())
    # The schema's defaults, as the workflow's run had them (statistics.metric: accuracy).
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    published.mkdir(parents=True, exist_ok=True)
    shutil.copy2(config_path, published / "config.yaml")
    facts = {protocol: publish_protocol(workdir, published, protocol, config) for protocol in PROTOCOLS}
    summaries = {p: published / p / "cv_summary.tsv" for p in PROTOCOLS}
    if all(path.exists() for path in summaries.values()):
        primary, compared = (pd.read_csv(summaries[p], sep="\t") for p in PROTOCOLS)
        keys = grid_axes(config)
        shared = primary.merge(compared[keys])
        if len(shared):
            table, comparison = compare_protocols(primary.merge(shared[keys]), compared.merge(shared[keys]))
            write_tsv(table, published / "protocol_comparison.tsv")
            write_json({**comparison, "primary": LABELS["stratified"], "compared": LABELS["participants"]},
                       published / "protocol_comparison.json")
            plots.protocol_comparison(table, LABELS["stratified"], LABELS["participants"],
                                      published / "protocol_comparison.svg")
    if (published / "original.tsv").exists():  # the reference study: beside the original's table
        beside_original(published)
    if published == STUDY:
        update_readme((published / "table.md").read_text())
    update_search_table(published)
    machines: dict[str, int] = {}  # jobs by machine: a resumed study may have run on several
    for path in sorted((published / "jobs").glob("**/metrics.json")):
        m = json.loads(path.read_text())
        machine = f"{m.get('cpu')} ({m.get('device')}, {m.get('precision')}, torch {m.get('torch')}, " \
                  f"{m.get('threads')} threads, flags {','.join(m.get('cpu_flags') or [])})"
        machines[machine] = machines.get(machine, 0) + 1
    write_json({
        "config": f"config.yaml ({config_path.relative_to(REPO) if config_path.is_relative_to(REPO) else config_path}"
                  " as run; data_dir: the Sign Language Digits photos)",
        "training_code_commit": git_commit(workdir),
        "publishing_code_commit": git_commit(REPO),
        "jobs_by_machine": machines,
        "publisher_platform": platform.platform(),
        "protocols": facts,
    }, published / "provenance.json")
    for protocol, f in facts.items():
        print(f"{protocol}: {f['jobs']} jobs, {f.get('grid_points_finished', 0)} grid points finished, "
              f"{f.get('training_minutes', 0)} training minutes")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["restore", "publish", "publish-decide", "publish-race"])
    p.add_argument("--workdir", type=Path, required=True, help="the Snakemake working directory of the study")
    p.add_argument("--published", type=Path, default=REPO / "docs" / "study")
    p.add_argument("--config", type=Path, default=REPO / "config" / "study.yaml")
    p.add_argument("--race", type=Path, default=REPO / "config" / "search-race.yaml",
                   help="publish-race: the overlay that raced --config")
    a = p.parse_args(argv)
    if a.action == "restore":
        restore(a.workdir, a.published)
    elif a.action == "publish-decide":
        publish_decide(a.workdir, a.published)
    elif a.action == "publish-race":
        publish_race(a.workdir, a.published, overlaid_config(a.config, a.race), a.race)
    else:
        publish(a.workdir, a.published, a.config)


if __name__ == "__main__":
    sys.exit(main())
