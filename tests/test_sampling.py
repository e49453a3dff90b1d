"""Sampled grid points (grid.sample): drawn once when the workflow plans, the same on every
run, extended without moving the points already drawn, within their ranges and of their axes'
types, planned in the same folders as the same points listed; bad specs stopped with one line
naming the key; and the configs without grid.sample plan the very jobs they planned before
(the published jobs of docs/study and docs/recipe)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import Paramspace, validate

from conftest import REPO, write_config
from cvgrid.grid import ConfigError, grid_axes, grid_table, listed_grid, sample_note
from cvgrid.sampling import SIGNIFICANT_DIGITS, round_significant, sample_points, unit_points

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
SEARCH = REPO / "config" / "search.yaml"


def merged(path: Path) -> dict:
    """The config as the workflow reads it: `path` merged over config/config.yaml, validated."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load(path.read_text()))
    validate(config, SCHEMA)
    return config


def search_config(**sample) -> dict:
    config = merged(SEARCH)
    config["grid"]["sample"].update(sample)
    return config


def folders(table: pd.DataFrame) -> list[str]:
    return list(Paramspace(table).instance_patterns)


def planned_points(stdout: str, root: str = "results") -> set[str]:
    """The grid-point folders of the training jobs a dry run plans under `root`."""
    return set(re.findall(rf"(?<![\w/]){root}/train/(\S+?)/repeat~\d+/fold~\d+/metrics\.json", stdout))


def test_the_search_config_draws_32_distinct_points_the_same_way_every_time():
    first, again = grid_table(search_config()), grid_table(search_config())
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 32 and not first.duplicated().any()
    assert first.attrs["sample"] == {"points": 32, "method": "sobol", "seed": 0, "draws": 32}
    other = grid_table(search_config(seed=1))
    assert not set(folders(first)) & set(folders(other))  # another seed, other points


@pytest.mark.parametrize("method", ["sobol", "random"])
def test_raising_points_keeps_every_point_drawn_before(method):
    # 5 -> 8 -> 13 -> 40 crosses Sobol's powers of two (the sequence is drawn in its order).
    tables = [grid_table(search_config(points=n, method=method)) for n in (5, 8, 13, 40)]
    for smaller, larger in zip(tables, tables[1:]):
        pd.testing.assert_frame_equal(smaller, larger.iloc[: len(smaller)])
    assert len(tables[-1]) == 40


@pytest.mark.parametrize("method", ["sobol", "random"])
def test_points_lie_in_their_ranges_with_their_axes_types_and_short_numbers(method):
    table = grid_table(search_config(points=64, method=method))
    assert grid_axes(search_config()) == list(table.columns) == [
        "model", "batch_size", "learning_rate", "augmentation", "weight_decay", "label_smoothing", "schedule"]
    assert table.dtypes["batch_size"] == "int64" and table.dtypes["learning_rate"] == "float64"
    assert table["learning_rate"].between(0.0001, 0.03).all() and table["weight_decay"].between(0, 0.1).all()
    assert table["label_smoothing"].between(0, 0.2).all()
    # Every choice of every list is drawn, and nothing else.
    assert set(table["batch_size"]) == {32, 64, 128} and set(table["model"]) == {"model_a"}
    assert set(table["augmentation"]) == {"none", "affine"} and set(table["schedule"]) == {"constant", "cosine"}
    # log-uniform: about as many points in each decade of 1e-4 .. 1e-2 (a uniform draw would put 3 % below 1e-3).
    assert 0.25 < (table["learning_rate"] < 0.001).mean() < 0.6
    for axis in ("learning_rate", "weight_decay", "label_smoothing"):
        assert all(round_significant(x) == x for x in table[axis])
        # The folder's text: at most SIGNIFICANT_DIGITS digits after the leading zeros.
        for text in map(str, table[axis]):
            digits = re.sub(r"e.*", "", text).replace(".", "").lstrip("0")
            assert len(digits) <= SIGNIFICANT_DIGITS, text


def test_int_ranges_reach_both_ends_and_integer_axes_round_continuous_draws():
    config = search_config(points=60)
    config["grid"] |= {"warmup_epochs": {"int": [0, 3]}, "max_epochs": {"log_uniform": [10, 80]}}
    table = grid_table(config)
    assert set(table["warmup_epochs"]) == {0, 1, 2, 3}
    assert table.dtypes["max_epochs"] == "int64" and table["max_epochs"].between(10, 80).all()
    assert table["max_epochs"].nunique() > 20


@pytest.mark.parametrize("learning_rate", [None, {"log_uniform": [0.000001, 0.00001]}])
def test_a_point_plans_the_same_folder_sampled_or_listed(learning_rate):
    config = search_config()
    if learning_rate:  # below 1e-4 a float's str() has an exponent: learning_rate~3.45e-06
        config["grid"]["learning_rate"] = learning_rate
    sampled = grid_table(config)
    if learning_rate:
        assert all("e-0" in str(x) for x in sampled["learning_rate"])
    # Each sampled point, written back into a config as one-value lists (through YAML, as a user
    # would copy it), is listed in the very folder it was sampled in.
    for index, point in enumerate(sampled.head(8).to_dict("records")):
        listed = copy.deepcopy(config)
        del listed["grid"]["sample"]
        listed["grid"] |= {axis: [value] for axis, value in point.items()}
        listed = yaml.safe_load(yaml.safe_dump(listed))
        assert folders(grid_table(listed)) == [folders(sampled)[index]]
    # A sample of a grid of lists draws among its points, in their folders.
    config = merged(REPO / "config" / "study.yaml")
    product = set(folders(grid_table(config)))
    config["grid"]["sample"] = {"points": 18}
    assert set(folders(grid_table(config))) == product  # all 18: none twice


def test_a_draw_that_repeats_a_point_after_rounding_is_skipped_and_said():
    config = merged(REPO / "config" / "study.yaml")
    config["grid"]["sample"] = {"points": 18, "method": "random", "seed": 3}
    table = grid_table(config)
    assert len(table) == 18 and not table.duplicated().any()
    assert table.attrs["sample"]["draws"] > 18
    assert f"{table.attrs['sample']['draws'] - 18} repeated an earlier point after rounding" in sample_note(table)
    # The points are the first distinct draws, in the sequence's order.
    specs = {axis: config["grid"][axis] for axis in grid_axes(config)}
    rows, draws = sample_points(specs, {"model": str, "batch_size": int, "learning_rate": float,
                                        "augmentation": str}, 18, "random", 3)
    assert draws == table.attrs["sample"]["draws"] and rows == table.to_dict("records")


def test_unit_points_are_the_sequence_in_order():
    assert (unit_points("sobol", 7, 3, 13) == unit_points("sobol", 7, 3, 64)[:13]).all()
    assert (unit_points("random", 7, 3, 5) == unit_points("random", 7, 3, 9)[:5]).all()
    assert ((0 <= unit_points("sobol", 0, 7, 32)) & (unit_points("sobol", 0, 7, 32) < 1)).all()


@pytest.mark.parametrize(("grid", "named"), [
    ({"learning_rate": {"normal": [0.001, 0.01]}}, "grid.learning_rate: unknown distribution 'normal'"),
    ({"learning_rate": {"log_uniform": [0.03, 0.0001]}}, "grid.learning_rate.log_uniform: low 0.03 is not below high 0.0001"),
    ({"weight_decay": {"uniform": [0.1, 0.1]}}, "grid.weight_decay.uniform: low 0.1 is not below high 0.1"),
    ({"weight_decay": {"log_uniform": [0, 0.1]}}, "grid.weight_decay.log_uniform: low is 0, and the log"),
    ({"augmentation": {"uniform": [0, 1]}}, "grid.augmentation is a range"),
    ({"schedule": {"int": [0, 2]}}, "grid.schedule is a range"),
    ({"sample": {"points": 0}}, "grid.sample.points is 0"),
    ({"sample": {"points": 8, "method": "latin"}}, "grid.sample.method: unknown method 'latin'"),
    ({"sample": {"points": 8, "seed": -1}}, "grid.sample.seed is -1"),
    ({"sample": {"points": 8, "n": 3}}, "grid.sample.n: unknown key"),
    ({"sample": {"points": 200}, "weight_decay": [0.0, 0.1], "label_smoothing": [0.0],
      "learning_rate": [0.001]}, "grid.sample.points is 200, but the grid's lists and int ranges hold only 24"),
    ({"learning_rate": {"log_uniform": ["1e-4", 0.03]}}, "grid.learning_rate.log_uniform must be [low, high], two numbers"),
    ({"learning_rate": {"log_uniform": [0.0001]}}, "grid.learning_rate.log_uniform must be [low, high]"),
    ({"learning_rate": {"uniform": [0.001, 0.01], "log_uniform": [0.001, 0.01]}}, "grid.learning_rate must name one distribution"),
    ({"weight_decay": {"int": [0, 1]}}, "grid.weight_decay.int: int draws whole numbers"),
    ({"batch_size": [32, 64, 32]}, "grid.batch_size lists a value twice"),
])
def test_bad_sample_specs_get_one_line_naming_the_key(grid, named):
    config = search_config()
    config["grid"] |= grid
    with pytest.raises(ConfigError) as error:
        grid_table(config)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_range_needs_grid_sample():
    config = search_config()
    del config["grid"]["sample"]
    with pytest.raises(ConfigError, match=r"^grid\.learning_rate is a range .* needs grid\.sample"):
        grid_table(config)


def test_sampled_values_meet_the_schemas_limits_of_listed_ones():
    config = search_config()
    validate(listed_grid(config, grid_table(config)), SCHEMA)  # the search's ranges are fine
    config["grid"]["weight_decay"] = {"uniform": [0, 2]}
    with pytest.raises(WorkflowError, match=r"2 is greater than the maximum of 1"):
        validate(listed_grid(config, grid_table(config)), SCHEMA)


def test_the_workflow_stops_a_bad_spec_with_its_one_line(tmp_path, snakemake):
    config = yaml.safe_load(SEARCH.read_text())
    config["grid"]["label_smoothing"] = {"uniform": [0.2, 0.0]}
    result = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), "-n", check=False)
    assert result.returncode != 0
    assert "config: grid.label_smoothing.uniform: low 0.2 is not below high 0.0" in result.stdout + result.stderr


def test_a_small_sampled_grid_plans_its_points_in_a_real_dry_run(tmp_path, snakemake):
    config = {
        "cv": {"folds": 2},
        "models": {"model_a": {}},
        "augmentations": {"none": {}},
        "grid": {"sample": {"points": 5, "method": "random", "seed": 11}, "model": ["model_a"],
                 "batch_size": {"int": [8, 64]}, "learning_rate": {"log_uniform": [0.0001, 0.01]},
                 "augmentation": ["none"], "seed": [0, 1]},
    }
    result = snakemake(tmp_path, write_config(tmp_path / "sampled.yaml", config), "-n")
    planned = planned_points(result.stdout)
    assert planned == set(folders(grid_table(merged(tmp_path / "sampled.yaml"))))
    assert len(planned) == 5 and re.search(r"\btrain\s+10\b", result.stdout)
    for point in planned:
        values = dict(part.split("~") for part in point.split("/"))
        assert list(values) == ["model", "batch_size", "learning_rate", "augmentation", "seed"]
        assert 8 <= int(values["batch_size"]) <= 64 and 0.0001 <= float(values["learning_rate"]) <= 0.01
    assert "grid.sample: 5 grid points drawn (random, seed 11" in result.stdout + result.stderr


def test_the_search_plans_its_published_points_on_the_studys_folds(tmp_path, snakemake):
    """The wide search's 32 points, as listed when it started (tests/search_points.txt): a
    change of the sampling that moved them would orphan the jobs already trained."""
    stored = [line for line in (REPO / "tests" / "search_points.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    result = snakemake(tmp_path, SEARCH, "-n", "-p")
    assert planned_points(result.stdout) == set(stored) and len(stored) == 32
    assert re.search(r"\btrain\s+160\b", result.stdout)
    # The study's fold table: the same images and the same command (scheme, k, seed, validation
    # split) as the study's stratified folds.
    study = snakemake(tmp_path, REPO / "config" / "study.yaml", "-n", "-p")
    for step in (r"prepare_dataset\.py .*", r"make_folds\.py .*?--out results/data/folds\.tsv"):
        search_step, study_step = (re.search(step, r.stdout).group(0) for r in (result, study))
        assert search_step == study_step
    assert "--folds 5 " in search_step and "--seed 42 " in search_step and "--groups" not in search_step


@pytest.mark.parametrize(("configfile", "published"), [
    ("docs/study/config.yaml", {"results": "docs/study/jobs/stratified", "results/compare": "docs/study/jobs/participants"}),
    ("docs/recipe/config.yaml", {"results": "docs/recipe/jobs/stratified"}),
])
def test_configs_without_sample_plan_the_jobs_they_published(tmp_path, snakemake, configfile, published):
    result = snakemake(tmp_path, REPO / configfile, "-n")
    for root, jobs in published.items():
        trained = {str(path.parent.parent.parent.relative_to(REPO / jobs / "train"))
                   for path in (REPO / jobs).glob("train/**/metrics.json")}
        assert trained and planned_points(result.stdout, root) == trained
    same = {"docs/study/config.yaml": "config/study.yaml", "docs/recipe/config.yaml": "config/modern_recipe.yaml"}
    assert (REPO / configfile).read_text() == (REPO / same[configfile]).read_text()


def test_the_quick_config_plans_its_four_jobs(tmp_path, snakemake):
    result = snakemake(tmp_path, REPO / "config" / "quick.yaml", "-n")
    assert planned_points(result.stdout) == {
        f"model~model_a/batch_size~32/learning_rate~{lr}/augmentation~none" for lr in ("0.0004", "0.001")}
    assert re.search(r"\btrain\s+4\b", result.stdout)
