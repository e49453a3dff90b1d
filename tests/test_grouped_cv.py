"""Participant-grouped CV: no person in two parts of a fold, every class in every fold; a
user's groups file; the two protocols side by side."""

from __future__ import annotations

import pandas as pd
import pytest

from cvgrid.data import list_images
from cvgrid.folds import FoldError, groups_for_index, make_folds
from cvgrid.participants import infer_participants
from cvgrid.protocols import compare_protocols
from cvgrid.race import COMPLETED, stopped_label
from cvgrid.summary import MetricsError


@pytest.mark.real_data
def test_participant_folds_keep_every_person_in_one_part_and_every_class_in_every_fold(real_data_dir):
    index = list_images(real_data_dir).index
    groups = infer_participants(index["file"].tolist(), index["class_name"].tolist())["group"].to_numpy()
    labels = index["label"].to_numpy()
    folds = make_folds(labels, n_folds=5, repeats=2, seed=42, validation_fraction=0.1, groups=groups)
    folds["group"] = groups[folds["sample"]]
    folds["label"] = labels[folds["sample"]]
    for (repeat, fold), part in folds.groupby(["repeat", "fold"]):
        roles_per_group = part.groupby("group")["role"].nunique()
        assert roles_per_group.max() == 1, f"repeat {repeat} fold {fold}: a person is in two parts"
        for role in ("train", "validation", "test"):
            assert part.loc[part["role"] == role, "label"].nunique() == 10, (repeat, fold, role)
    # Every person is tested exactly once per repeat.
    tested = folds[folds["role"] == "test"].groupby(["repeat", "group"])["fold"].nunique()
    assert (tested == 1).all()


def test_a_groups_file_is_matched_by_file_name_and_gaps_are_named():
    index = pd.DataFrame({"file": ["a/1.jpg", "a/2.jpg", "b/1.jpg"], "label": [0, 0, 1]})
    table = pd.DataFrame({"file": ["b/1.jpg", "a/1.jpg", "a/2.jpg"], "group": ["x", "y", "y"]})
    assert list(groups_for_index(index, table, "groups.tsv")) == ["y", "y", "x"]
    with pytest.raises(FoldError, match=r"groups.tsv has no group for 1 image\(s\), e.g. 'b/1.jpg'"):
        groups_for_index(index, table.iloc[1:], "groups.tsv")
    with pytest.raises(FoldError, match="lists 'a/1.jpg' twice"):
        groups_for_index(index, pd.concat([table, table.iloc[[1]]]), "groups.tsv")
    with pytest.raises(FoldError, match=r"lacks the column\(s\) \['group'\]"):
        groups_for_index(index, table[["file"]], "groups.tsv")


def summary(accuracies: dict) -> pd.DataFrame:
    rows = [{"model": "m", "batch_size": bs, "learning_rate": lr, "augmentation": "none",
             "mean_accuracy": acc, "acc_std_x2": 0.01} for (bs, lr), acc in accuracies.items()]
    return pd.DataFrame(rows)


def test_protocols_side_by_side_report_the_difference_and_whether_the_ranking_changes():
    primary = summary({(32, 0.001): 0.97, (64, 0.001): 0.95, (32, 0.0001): 0.90})
    same_order = summary({(32, 0.001): 0.90, (64, 0.001): 0.88, (32, 0.0001): 0.80})
    table, facts = compare_protocols(primary, same_order)
    assert table["difference"].round(6).tolist() == [-0.07, -0.07, -0.10]
    assert facts["same_best"] and facts["spearman_rank_correlation"] == pytest.approx(1.0)
    assert facts["mean_difference"] == pytest.approx(-0.08)

    swapped = summary({(32, 0.001): 0.88, (64, 0.001): 0.90, (32, 0.0001): 0.80})
    table, facts = compare_protocols(primary, swapped)
    assert not facts["same_best"] and facts["best_compared"]["batch_size"] == 64
    row = table[table["batch_size"] == 64].iloc[0]
    assert (row["rank_primary"], row["rank_compared"]) == (2, 1)

    with pytest.raises(MetricsError, match="same grid points"):
        compare_protocols(primary, same_order.iloc[:2])


def raced(accuracies: dict, stopped: dict) -> pd.DataFrame:
    """A raced cv_summary (cvgrid.race.mark_race's race column): `stopped` maps a point to the folds it had."""
    table = summary(accuracies)
    table["race"] = [stopped_label(stopped[(bs, lr)]) if (bs, lr) in stopped else COMPLETED
                     for bs, lr in zip(table["batch_size"], table["learning_rate"])]
    return table


def test_a_point_stopped_by_the_race_under_either_protocol_is_left_out_of_the_comparison():
    """Each protocol races on its own: (64, 0.001) is complete under the first and stopped under
    the second, whose partial mean (0.40) must not be set beside the full one (0.95)."""
    primary = raced({(32, 0.001): 0.97, (64, 0.001): 0.95, (32, 0.0001): 0.60, (64, 0.0001): 0.93},
                    stopped={(32, 0.0001): 2})
    compared = raced({(32, 0.001): 0.90, (64, 0.001): 0.40, (32, 0.0001): 0.55, (64, 0.0001): 0.91},
                     stopped={(64, 0.001): 2, (32, 0.0001): 3})
    table, facts = compare_protocols(primary, compared)
    # The two points complete under both first, by primary rank; then the others, kept and marked.
    assert list(zip(table["batch_size"], table["learning_rate"])) == [(32, 0.001), (64, 0.0001), (64, 0.001),
                                                                       (32, 0.0001)]
    assert table["difference"].round(6).tolist()[:2] == [-0.07, -0.02] and table["difference"][2:].isna().all()
    assert table["race_compared"].tolist()[2:] == [stopped_label(2), stopped_label(3)]
    # Ranks among each protocol's completed points; none where a point was stopped.
    assert table["rank_primary"].tolist()[:3] == [1, 3, 2] and pd.isna(table["rank_primary"][3])
    assert table["rank_compared"].tolist()[:2] == [2, 1] and table["rank_compared"][2:].isna().all()
    assert facts["points_compared"] == 2 and facts["mean_difference"] == pytest.approx(-0.045)
    assert facts["spearman_rank_correlation"] is None  # two points
    assert facts["best_primary"]["learning_rate"] == 0.001 and facts["best_compared"]["batch_size"] == 64
    assert not facts["same_best"]
    left_out = [(p["batch_size"], p["learning_rate"], p["race_primary"], p["race_compared"]) for p in facts["left_out"]]
    assert left_out == [(64, 0.001, COMPLETED, stopped_label(2)), (32, 0.0001, stopped_label(2), stopped_label(3))]

    # Each protocol's best stopped the other's: no point is complete under both, and nothing breaks.
    primary = raced({(32, 0.001): 0.97, (64, 0.001): 0.50}, stopped={(64, 0.001): 2})
    compared = raced({(32, 0.001): 0.40, (64, 0.001): 0.90}, stopped={(32, 0.001): 2})
    table, facts = compare_protocols(primary, compared)
    assert facts["points_compared"] == 0 and facts["mean_difference"] is None and table["difference"].isna().all()
    assert not facts["same_best"] and len(facts["left_out"]) == 2

    # A summary without a race column (a protocol that did not race) counts every point complete.
    table, facts = compare_protocols(primary.drop(columns="race"), compared)
    assert table["race_primary"].eq(COMPLETED).all() and facts["points_compared"] == 1
