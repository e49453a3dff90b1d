"""The published study (docs/study/, README "The study, reproduced") is what the code computes:
its summary and statistics are recomputed from its published per-job files, so that a
published figure can never drift from the library that made it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO
from cvgrid import wording
from cvgrid.analysis import analyse
from cvgrid.grid import grid_axes, sampled_ranges
from cvgrid.stats import Thresholds
from cvgrid.summary import complete_points, cv_summary, fold_table

STUDY = REPO / "docs" / "study"
PROTOCOLS = {"stratified": "results", "participants": "results/compare"}
# Each published experiment and the config it ran: the study, and the modern training recipe
# beside the reference recipe (README "A modern recipe"), published the same way.
EXPERIMENTS = {"study": (STUDY, REPO / "config" / "study.yaml"),
               "recipe": (REPO / "docs" / "recipe", REPO / "config" / "modern_recipe.yaml"),
               "search": (REPO / "docs" / "search", REPO / "config" / "search.yaml")}
# The (experiment, protocol) pairs published so far (a grid still running is published as far
# as it has got).
PUBLISHED = [(name, p) for name, (folder, _) in EXPERIMENTS.items() for p in PROTOCOLS
             if (folder / p / "cv_folds.tsv").exists()]


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def same_table(computed: pd.DataFrame, published: Path) -> None:
    """Equal after the round trip through TSV (floats to 1e-12, NaN where NaN)."""
    expected = read(published)
    computed = pd.read_csv(pd.io.common.StringIO(computed.to_csv(sep="\t", index=False)), sep="\t")
    pd.testing.assert_frame_equal(computed, expected, check_exact=False, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_the_published_config_is_the_repositorys_config(experiment):
    folder, config = EXPERIMENTS[experiment]
    assert (folder / "config.yaml").read_text() == config.read_text()


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_protocol_is_published_or_said_to_have_no_jobs_yet(experiment):
    folder, _ = EXPERIMENTS[experiment]
    provenance = json.loads((folder / "provenance.json").read_text())
    assert (experiment, "stratified") in PUBLISHED
    for protocol in PROTOCOLS:
        jobs = list((folder / "jobs" / protocol).glob("train/**/metrics.json"))
        assert provenance["protocols"][protocol]["jobs"] == len(jobs)
        assert ((experiment, protocol) in PUBLISHED) == bool(jobs)


@pytest.mark.parametrize(("experiment", "protocol"), PUBLISHED)
def test_published_folds_are_the_published_jobs(experiment, protocol):
    """cv_folds.tsv holds exactly the published jobs' metrics.json, nothing more."""
    folder, config_path = EXPERIMENTS[experiment]
    metrics = sorted((folder / "jobs" / protocol).glob("train/**/metrics.json"))
    assert metrics, f"no published jobs of {protocol}"
    same_table(fold_table(metrics, grid_axes(yaml.safe_load(config_path.read_text()))), folder / protocol / "cv_folds.tsv")
    for path in metrics:  # each job's other files were published with it
        assert (path.parent / "predictions.tsv").exists() and (path.parent / "history.tsv").exists(), path
        assert json.loads(path.read_text())["config"]["model"] == "model_a"


@pytest.mark.parametrize(("experiment", "protocol"), PUBLISHED)
def test_published_summary_and_statistics_are_recomputed_exactly(experiment, protocol):
    folder, config_path = EXPERIMENTS[experiment]
    from snakemake.utils import validate

    config = yaml.safe_load(config_path.read_text())
    validate(config, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))  # its defaults, as the run's
    pairs = config["cv"]["folds"] * config["cv"]["repeats"]
    folds, unfinished = complete_points(read(folder / protocol / "cv_folds.tsv"), pairs)
    provenance = json.loads((folder / "provenance.json").read_text())["protocols"][protocol]
    assert len(unfinished) == len(provenance["unfinished_grid_points"])
    if folds.empty:  # jobs published, no grid point finished yet: nothing may claim otherwise
        assert provenance["grid_points_finished"] == 0
        assert not (folder / protocol / "cv_summary.tsv").exists()
        return
    summary = cv_summary(folds, metric=config["statistics"]["metric"])
    same_table(summary, folder / protocol / "cv_summary.tsv")
    sizes = read(folder / protocol / "stats" / "model_costs.tsv")  # the model sizes: tests/test_costs.py
    assert sizes["model"].tolist() == sorted(folds["model"].unique())
    result = analyse(folds, summary, Thresholds.from_config(config["statistics"]), model_sizes=sizes,
                     contender_probability=config["statistics"].get("contender_probability", 0.5),
                     choose=config.get("final", {}).get("choose", "best"), cost=config.get("final", {}).get("cost", "work"),
                     ranges=sampled_ranges(config),
                     # BBC-CV of the rule (scripts/publish_study.py; its method: tests/test_decision.py)
                     expectations=[json.loads(p.read_text())
                                   for p in sorted((folder / protocol / "stats" / "expectation").glob("*.json"))])
    for name, table in result.tables.items():
        same_table(table, folder / protocol / "stats" / f"{name}.tsv")
    text = wording.summary_text(result)
    assert (folder / protocol / "stats" / "summary.md").read_text() == text
    assert (folder / protocol / "stats" / "summary.html").read_text() == wording.summary_html(text)


def test_the_readme_shows_the_published_table(tmp_path):
    """README "The study, reproduced" holds docs/study/table.md verbatim, and that table is
    what the published summaries and verdicts give (regenerated here beside the original's)."""
    from publish_study import beside_original  # scripts/ is on sys.path (conftest)

    copy = tmp_path / "study"
    shutil.copytree(STUDY, copy, ignore=shutil.ignore_patterns("jobs"))
    beside_original(copy)
    table = (STUDY / "table.md").read_text()
    assert (copy / "table.md").read_text() == table
    assert table in (REPO / "README.md").read_text()


def test_restored_jobs_are_newer_than_the_data_steps_before_them(tmp_path):
    """`make study` runs the data steps, then restores the published jobs: Snakemake keeps a
    restored job only if its files are newer than its inputs, so they must get the time of the copy."""
    import os
    import time

    from publish_study import copy_jobs

    source = tmp_path / "published" / "train" / "point" / "fold~0"
    source.mkdir(parents=True)
    for name in ("metrics.json", "history.tsv", "predictions.tsv"):
        (source / name).write_text(name)
        os.utime(source / name, (1_000_000_000, 1_000_000_000))  # published long ago
    data = tmp_path / "work" / "data" / "folds.tsv"
    data.parent.mkdir(parents=True)
    data.write_text("made now")
    time.sleep(0.01)
    assert copy_jobs(tmp_path / "published", tmp_path / "work") == 1
    restored = tmp_path / "work" / "train" / "point" / "fold~0"
    for name in ("metrics.json", "history.tsv", "predictions.tsv"):
        assert (restored / name).read_text() == name
        assert (restored / name).stat().st_mtime > data.stat().st_mtime


DECIDE = STUDY / "decide"


def test_the_published_decide_run_is_recomputed_exactly():
    """docs/study/decide (cv.decide on the study's stratified grid, README "Repeats only where they
    decide"): its folds are the published first repeat plus its added jobs, and every table and
    the summary (with the paragraph on the repeats) follow from them and its rounds."""
    from publish_study import decide_config, decide_rounds

    config = decide_config()
    assert (DECIDE / "config.yaml").read_text() == (REPO / "config" / "study-decide.yaml").read_text()
    added = sorted((DECIDE / "jobs" / "stratified").glob("train/**/metrics.json"))
    assert added and all("repeat~0" not in path.parts for path in added)
    metrics = sorted((STUDY / "jobs" / "stratified").glob("train/**/metrics.json")) + added
    folds = fold_table(metrics, grid_axes(config))
    same_table(folds, DECIDE / "cv_folds.tsv")
    summary = cv_summary(folds, metric="accuracy")
    same_table(summary, DECIDE / "cv_summary.tsv")
    rounds = decide_rounds(DECIDE / "rounds")
    # Round 1 gave repeat 1 to exactly the points its table marks, and they are the points with added jobs.
    given = rounds[0][rounds[0]["gets_repeat"].astype(bool)]
    assert sorted(given["point"]) == sorted({str(Path(*p.relative_to(DECIDE / "jobs" / "stratified" / "train").parts[:4]))
                                             for p in added})
    stats = DECIDE / "stats"
    result = analyse(folds, summary, Thresholds.from_config(config["statistics"]),
                     model_sizes=read(stats / "model_costs.tsv"),
                     contender_probability=config["statistics"]["contender_probability"],
                     choose=config["final"]["choose"], cost=config["final"]["cost"], ranges=None,
                     expectations=[json.loads(p.read_text()) for p in sorted((stats / "expectation").glob("*.json"))])
    for name, table in result.tables.items():
        same_table(table, stats / f"{name}.tsv")
    text = wording.summary_text(result, extra=[wording.decide_paragraph(
        rounds, result.tables["compare_to_best"], int(folds["fold"].nunique()))])
    assert (stats / "summary.md").read_text() == text
    assert "**Repeats only where they decide**" in text


SEARCH = REPO / "docs" / "search"


def test_the_published_race_rounds_are_the_race_of_the_published_jobs():
    """docs/search/raced/rounds (the raced wide search, config/search-race.yaml; published round by
    round as the race goes): each round is what cvgrid.race.replay_race computes from the
    published jobs, as the workflow's checkpoints computed it."""
    from publish_study import overlaid_config, point_folders, race_rounds
    from cvgrid.race import replay_race

    config = overlaid_config(REPO / "config" / "search.yaml", REPO / "config" / "search-race.yaml")
    published = race_rounds(SEARCH / "raced" / "rounds")
    after = config["cv"]["race"]["after_folds"]
    assert published and published[0]["round"].max() == after
    metrics = sorted((SEARCH / "jobs" / "stratified").glob("train/**/metrics.json"))
    axes = grid_axes(config)
    folders = point_folders(metrics, axes)
    assert len(folders) == 32
    replayed = replay_race(fold_table(metrics, axes), folders, Thresholds.from_config(config["statistics"]),
                           after, after + len(published))
    for again, before in zip(replayed, published):
        again = pd.read_csv(pd.io.common.StringIO(again.to_csv(sep="\t", index=False)), sep="\t",
                            dtype={"stopped_after": "Int64"})
        pd.testing.assert_frame_equal(again, before, check_exact=False, rtol=1e-12, atol=1e-12)


def test_the_published_raced_search_is_recomputed_exactly():
    """docs/search/raced (the finished race of the wide search, config/search-race.yaml): its
    folds are exactly the jobs its rounds let train, taken from the full run's published jobs,
    and its tables, statistics and summary (with the Racing paragraph) follow from them."""
    from publish_study import overlaid_config, race_rounds, raced_metrics, raced_tables
    from cvgrid.race import completed, race_savings

    raced = SEARCH / "raced"
    config = overlaid_config(REPO / "config" / "search.yaml", REPO / "config" / "search-race.yaml")
    assert (raced / "config.yaml").read_text() == (REPO / "config" / "search-race.yaml").read_text()
    rounds = race_rounds(raced / "rounds")
    assert len(rounds) == config["cv"]["folds"] - config["cv"]["race"]["after_folds"]  # a finished race
    jobs = SEARCH / "jobs" / "stratified"
    folds, summary = raced_tables(jobs, rounds, config)
    same_table(folds, raced / "cv_folds.tsv")
    same_table(summary, raced / "cv_summary.tsv")
    record = rounds[-1]
    stopped = record[record["status"] == "stopped"]
    assert sorted(summary.loc[summary["race"] != "completed", "folds"]) == sorted(stopped["stopped_after"])
    savings = race_savings(folds, config["cv"]["folds"])
    provenance = json.loads((raced / "provenance.json").read_text())
    assert (provenance["jobs_run"], provenance["jobs_full"], provenance["points_stopped"]) == (
        len(folds), 160, len(stopped)) == (savings["run"], savings["full"], len(savings["stopped"]))
    assert provenance["training_minutes"] == round(float(folds["seconds"].sum()) / 60, 1)
    stats = raced / "stats"
    metrics = raced_metrics(jobs, record[record["stopped_after"].isna()], config["cv"]["folds"])
    assert len(metrics) == len(completed(folds))
    result = analyse(completed(folds), completed(summary), Thresholds.from_config(config["statistics"]),
                     model_sizes=read(stats / "model_costs.tsv"),
                     contender_probability=config["statistics"].get("contender_probability", 0.5),
                     choose="best", cost="work", ranges=sampled_ranges(config),
                     expectations=[json.loads(p.read_text()) for p in sorted((stats / "expectation").glob("*.json"))])
    for name, table in result.tables.items():
        same_table(table, stats / f"{name}.tsv")
    text = wording.summary_text(result, extra=[
        wording.race_paragraph(folds, summary, config["statistics"]["metric"]),
        wording.decide_paragraph([], result.tables["compare_to_best"], config["cv"]["folds"])])
    assert (stats / "summary.md").read_text() == text
    assert "**Racing**" in text


def test_the_readme_shows_the_search_table_the_published_runs_give():
    """README "The wide search, raced and in full" holds docs/search/table.md verbatim, and that
    table is what the published full run, raced run and study give (recomputed here)."""
    from publish_study import search_table

    table = search_table()
    assert table is not None, "docs/search: the full run or the race is not finished"
    assert (SEARCH / "table.md").read_text() == table
    assert table in (REPO / "README.md").read_text()
