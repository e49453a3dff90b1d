"""What each grid point costs (cvgrid.costs): training work, parameters, multiply-accumulates
per image at the model's input size (torch's flop counter), measured seconds beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvgrid import costs

CONFIG = {"models": {"model_a": {}, "model_a_wide": {"architecture": "model_a", "options": {"width": 64}},
                     "model_a_drop": {"architecture": "model_a", "options": {"dropout": 0.5}}}}


def job_table(models=("model_a",)):
    rows = []
    for model in models:
        for batch in (32, 64):
            for fold, epochs in enumerate([20, 30]):
                rows.append({"model": model, "batch_size": batch, "learning_rate": 0.001, "augmentation": "none",
                             "repeat": 0, "fold": fold, "epochs_run": epochs + batch // 32, "n_train": 1000 + fold,
                             "seconds": 10.0 * (fold + 1) if batch == 32 else np.nan})
    return pd.DataFrame(rows)


def test_training_work_is_epochs_times_training_images_mean_over_the_jobs():
    table = costs.training_costs(job_table())
    assert table[["batch_size", "work"]].values.tolist() == [[32, (21 * 1000 + 31 * 1001) / 2],
                                                              [64, (22 * 1000 + 32 * 1001) / 2]]
    assert table["seconds"].iloc[0] == 15.0 and np.isnan(table["seconds"].iloc[1])  # none recorded: NaN, not 0
    assert table["jobs"].tolist() == [2, 2]


def test_a_fold_table_without_the_run_facts_is_refused_with_the_column():
    with pytest.raises(costs.CostError, match="epochs_run"):
        costs.training_costs(job_table().drop(columns="epochs_run"))


def test_model_a_counts_as_the_reference_model_at_its_input_size():
    # The Keras reference model A has 457,226 parameters. Its multiply-accumulates at 100 x 100,
    # by hand: three 3x3 convolutions at 100, 33 and 11 pixels (the pools cut by 3) and the head.
    by_hand = (3 * 32 * 9 * 100 * 100 + 32 * 64 * 9 * 33 * 33 + 64 * 128 * 9 * 11 * 11
               + 128 * 3 * 3 * 256 + 256 * 256 + 256 * 10)
    size = costs.model_size("model_a", (), 100, 10)
    assert size == {"parameters": 457_226, "macs": by_hand}


def test_a_grid_builds_each_model_once_and_options_that_change_the_model_change_its_cost():
    costs.model_size.cache_clear()
    table = costs.point_costs(job_table(("model_a", "model_a_wide", "model_a_drop")), CONFIG, num_classes=10)
    assert costs.model_size.cache_info().misses == 2  # model_a_drop is model_a: dropout changes no cost
    by_model = table.groupby("model")[["parameters", "macs"]].first()
    assert by_model.loc["model_a"].tolist() == by_model.loc["model_a_drop"].tolist()
    assert (by_model.loc["model_a_wide"] > by_model.loc["model_a"]).all()
    assert list(table.columns) == ["model", "batch_size", "learning_rate", "augmentation", "work", "parameters",
                                   "macs", "seconds", "jobs", "input_size"]
    assert set(table["input_size"]) == {100}


def test_a_model_the_config_does_not_define_is_named():
    with pytest.raises(costs.CostError, match="'model_b'"):
        costs.point_costs(job_table(("model_b",)), CONFIG, num_classes=10)
