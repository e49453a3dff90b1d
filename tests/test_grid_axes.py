"""Any training setting as a grid axis: the schema checks every axis, the reference config
plans the very jobs it planned before, and a grid over optimizer x weight decay x training seed
runs end to end with its own folders, columns, heatmap axes, factor effects and verdicts."""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO, tiny_config, write_config, write_image_folder
from cvgrid.grid import AXES, LATER_SETTINGS, ConfigError, grid_axes, grid_table, point_settings
from cvgrid.plots import heatmap_layout

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def reference_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, SCHEMA)  # what the Snakefile does first; fills in the defaults
    return config


def test_the_reference_config_plans_the_same_180_jobs_as_before(tmp_path, snakemake):
    stored = [line for line in (REPO / "tests" / "reference_train_paths.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "-n")
    planned = sorted({path for path in re.findall(r"results/train/\S+?/metrics\.json", result.stdout)})
    assert len(stored) == 180
    assert planned == sorted(stored)


@pytest.mark.parametrize(("grid", "named"), [
    ({"momentum": [0.9]}, "momentum"),
    ({"optimizer": ["rmsprop"]}, "rmsprop"),
    ({"weight_decay": [-0.1]}, "-0.1"),
    ({"label_smoothing": [1.0]}, "1.0"),
    ({"schedule": ["linear"]}, "linear"),
    ({"seed": ["one"]}, "one"),
    ({"dropout": [1.5]}, "1.5"),
    ({"max_epochs": [0]}, "0"),
    ({"tta": []}, "tta"),
])
def test_the_schema_refuses_unknown_axes_and_bad_values_naming_them(grid, named):
    config = reference_config()
    config["grid"].update(grid)
    with pytest.raises(WorkflowError) as error:
        validated(config)
    assert named in str(error.value)


def test_settings_off_the_grid_come_from_training_and_axes_override_them():
    config = reference_config()
    config["training"].update(optimizer="adamw", weight_decay=0.05)
    config["grid"] |= {"weight_decay": [0.0, 0.01], "seed": [0, 1]}
    config = validated(config)
    assert grid_axes(config) == ["model", "batch_size", "learning_rate", "augmentation", "weight_decay", "seed"]
    table = grid_table(config)
    assert len(table) == 36 * 4 and list(table.columns) == grid_axes(config)
    assert table.dtypes["seed"] == "int64" and table.dtypes["weight_decay"] == "float64"
    # Wildcards arrive as strings: the settings have the axes' types.
    point = {"model": "model_a", "batch_size": "32", "learning_rate": "0.001", "augmentation": "affine",
             "weight_decay": "0.01", "seed": "1"}
    s = point_settings(config, point)
    assert (s["optimizer"], s["weight_decay"], s["seed"], s["batch_size"]) == ("adamw", 0.01, 1, 32)
    assert (s["rotation_degrees"], s["architecture"], s["model_options"], s["dropout"]) == (20.0, "model_a", {}, None)
    # every axis's setting, but a setting added later at the value earlier jobs trained with
    assert set(s) >= set(AXES) - set(LATER_SETTINGS) and not set(s) & set(LATER_SETTINGS)


def test_class_weights_at_their_default_leave_a_jobs_settings_as_they_were_and_are_an_axis_like_any_other():
    """training.class_weights came after runs were published: at `none` a job's settings (the
    train rule's params, sorted JSON) lack the key, so a finished run retrains nothing; as an axis
    both values reach the jobs, and TrainSettings takes the missing key as none."""
    from cvgrid.training import settings_from_json

    config = validated(reference_config())
    assert config["training"]["class_weights"] == "none"  # the schema's default
    point = {"model": "model_a", "batch_size": 32, "learning_rate": 0.001, "augmentation": "none"}
    plain = point_settings(config, point)
    assert "class_weights" not in plain
    assert settings_from_json(plain, repeat=0, fold=0).class_weights == "none"
    # a config without the key (refit_best.py's --config leaves it out at its default): the same
    del config["training"]["class_weights"]
    assert point_settings(config, point) == plain
    config = reference_config()
    config["grid"]["class_weights"] = ["none", "balanced"]
    config = validated(config)
    assert grid_axes(config)[-1] == "class_weights" and len(grid_table(config)) == 36 * 2
    balanced = point_settings(config, {**point, "class_weights": "balanced"})
    assert balanced == {**plain, "class_weights": "balanced"}
    assert point_settings(config, {**point, "class_weights": "none"}) == plain
    config["grid"]["class_weights"] = ["inverse"]
    with pytest.raises(WorkflowError, match="inverse"):
        validated(config)


def test_a_recipe_axis_compares_named_sets_of_settings_as_wholes():
    config = reference_config()
    config["training"]["max_epochs"] = 40
    config["recipes"] = {"reference": {}, "modern": {"optimizer": "adamw", "weight_decay": 0.05,
                                                     "label_smoothing": 0.1, "schedule": "cosine"}}
    config["grid"] |= {"recipe": ["reference", "modern"], "seed": [0, 1]}
    config = validated(config)
    assert grid_axes(config)[4:] == ["recipe", "seed"]  # recipe: the first axis after the reference four
    point = {"model": "model_a", "batch_size": 32, "learning_rate": 0.001, "augmentation": "none", "seed": 1}
    reference = point_settings(config, {**point, "recipe": "reference"})
    modern = point_settings(config, {**point, "recipe": "modern"})
    assert (reference["optimizer"], reference["schedule"], reference["recipe"]) == ("adam", "constant", "reference")
    assert (modern["optimizer"], modern["weight_decay"], modern["label_smoothing"]) == ("adamw", 0.05, 0.1)
    assert modern["max_epochs"] == reference["max_epochs"] == 40 and modern["seed"] == 1  # training, axis
    config["recipes"]["modern"]["seed"] = 3
    with pytest.raises(ConfigError, match="recipes.modern sets seed, which is also an axis"):
        grid_table(config)
    config["grid"]["recipe"] = ["reference", "fancy"]
    with pytest.raises(ConfigError, match="fancy"):
        grid_table(config)
    bad = reference_config() | {"recipes": {"modern": {"optimizer": "lamb"}}}
    with pytest.raises(WorkflowError, match="lamb"):
        validated(bad)


def test_model_entries_build_variants_and_unknown_options_are_named():
    config = reference_config()
    config["models"]["model_a_wide"] = {"architecture": "model_a", "options": {"width": 64, "dropout": 0.5}}
    config["grid"]["model"] = ["model_a", "model_a_wide"]
    config = validated(config)
    s = point_settings(config, {"model": "model_a_wide", "batch_size": 32, "learning_rate": 0.001,
                                "augmentation": "none"})
    assert (s["architecture"], s["model_options"]) == ("model_a", {"width": 64, "dropout": 0.5})
    config["models"]["model_a_wide"]["options"]["depth"] = 4
    with pytest.raises(ConfigError, match=r"models\.model_a_wide\.options\.depth"):
        grid_table(config)
    config["models"]["model_a_wide"] = {"architecture": "model_z"}
    with pytest.raises(ConfigError, match="model_z"):
        grid_table(config)


def test_dropout_on_a_model_without_dropout_is_refused():
    config = reference_config()
    config["models"] = {"resnet18": {}}
    config["grid"] |= {"model": ["resnet18"], "dropout": [0.2, 0.5]}
    with pytest.raises(ConfigError, match="resnet18.*no dropout"):
        grid_table(validated(config))


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """The tiny grid of the workflow tests over optimizer x weight_decay x seed (8 grid points x
    2 folds), one job per grid point."""
    from types import SimpleNamespace

    from conftest import run_snakemake

    root = tmp_path_factory.mktemp("recipe_run")
    data = write_image_folder(root / "data", n_classes=3, per_class=20, size=(40, 40))
    config = tiny_config(data, cv={"validation_fraction": 0.2}, grid={"learning_rate": [0.001], "optimizer": ["adam", "adamw"],
                                     "weight_decay": [0.0, 0.05], "seed": [0, 1]},
                         training={"folds_per_job": "all"})
    configfile = write_config(root / "config.yaml", config)
    work = root / "work"
    work.mkdir()
    run_snakemake(work, configfile, "--cores", "2", timeout=900)
    return SimpleNamespace(work=work, results=work / "results")


def test_a_grid_over_optimizer_weight_decay_and_seed_runs_end_to_end(recipe_run):
    results = recipe_run.results
    point = "model~model_a/batch_size~16/learning_rate~0.001/augmentation~none/optimizer~adamw/weight_decay~0.05/seed~1"
    metrics = json.loads((results / "train" / point / "repeat~0" / "fold~1" / "metrics.json").read_text())
    assert (metrics["config"]["optimizer"], metrics["config"]["weight_decay"], metrics["config"]["seed"]) == (
        "adamw", 0.05, 1)
    assert len(list((results / "train").rglob("metrics.json"))) == 16

    axes = ["model", "batch_size", "learning_rate", "augmentation", "optimizer", "weight_decay", "seed"]
    summary = pd.read_csv(results / "cv_summary.tsv", sep="\t")
    assert list(summary.columns[: len(axes)]) == axes and len(summary) == 8
    folds = pd.read_csv(results / "cv_folds.tsv", sep="\t")
    assert list(folds.columns[: len(axes)]) == axes and len(folds) == 16
    # Two seeds of one recipe on the same folds: training noise, measured.
    by_seed = folds[(folds["optimizer"] == "adam") & (folds["weight_decay"] == 0.0)].groupby("seed")["loss"].sum()
    assert by_seed[0] != by_seed[1]

    assert heatmap_layout(summary, "model_a") == ("optimizer", "weight_decay", ["seed"])
    assert (results / "plots" / "heatmap_model_a.svg").stat().st_size > 0
    effects = pd.read_csv(results / "stats" / "factor_effects.tsv", sep="\t")
    assert sorted(set(effects["factor"])) == ["optimizer", "seed", "weight_decay"]
    verdicts = pd.read_csv(results / "stats" / "compare_to_best.tsv", sep="\t")
    assert len(verdicts) == 8 and set(verdicts.columns) >= set(axes) and verdicts["verdict"].notna().all()
    text = (results / "stats" / "summary.html").read_text()
    assert "optimizer" in text and "training seed" in text

    # The final model is refit with its best grid point's recipe.
    best = summary[summary["rank"] == 1].iloc[0]
    refit = json.loads((results / "final" / "model_a" / "model.json").read_text())
    assert refit["grid_point"] == {axis: best[axis].item() if hasattr(best[axis], "item") else best[axis]
                                   for axis in axes}
    assert (refit["refit"]["optimizer"], refit["refit"]["weight_decay"], refit["refit"]["seed"]) == (
        best["optimizer"], best["weight_decay"], best["seed"])


def test_heatmap_axes_from_the_config_must_be_axes_of_the_grid(tmp_path, snakemake):
    config = tiny_config(tmp_path, grid={"optimizer": ["adam", "sgd"]}, plots={"heatmap_axes": ["optimizer", "dropout"]})
    result = snakemake(tmp_path, write_config(tmp_path / "config.yaml", config), "-n", check=False)
    assert result.returncode != 0
    assert "plots.heatmap_axes names 'dropout'" in result.stdout + result.stderr
