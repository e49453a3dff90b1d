"""Per-epoch TensorBoard curves (cvgrid.curves, training.tensorboard): what TensorBoard reads
back is what was written, a resumed fold shows each epoch once, and switched off nothing is
written."""

from __future__ import annotations

import math

import pytest

from cvgrid.curves import NoCurves, open_curves, read_curves


def test_the_curves_tensorboard_reads_back_are_the_epochs_written(tmp_path):
    fold = tmp_path / "repeat~0" / "fold~0"
    with open_curves(fold, enabled=True) as curves:
        for epoch in (1, 2, 3):
            curves.epoch(epoch, {"train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10})
    assert [p.name.startswith("events.out.tfevents.") for p in fold.iterdir()] == [True]
    read = read_curves(fold)
    assert [step for step, _ in read["train_loss"]] == [1, 2, 3]
    assert [v for _, v in read["val_accuracy"]] == pytest.approx([0.6, 0.7, 0.8])


def test_a_resumed_fold_shows_each_epoch_once_with_the_resumed_values(tmp_path):
    with open_curves(tmp_path, enabled=True) as first:  # killed after epoch 4, checkpoint after 2
        for epoch in (1, 2, 3, 4):
            first.epoch(epoch, {"train_loss": float(epoch)})
    with open_curves(tmp_path, enabled=True) as resumed:
        for epoch in (3, 4, 5):
            resumed.epoch(epoch, {"train_loss": 10.0 + epoch})
    assert read_curves(tmp_path)["train_loss"] == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0), (5, 15.0)]


def test_a_diverged_loss_is_left_out_not_drawn_as_zero(tmp_path):
    with open_curves(tmp_path, enabled=True) as curves:
        curves.epoch(1, {"train_loss": 0.5, "val_loss": 0.4})
        curves.epoch(2, {"train_loss": math.nan, "val_loss": None})
    read = read_curves(tmp_path)
    assert read["train_loss"] == [(1, 0.5)] and read["val_loss"] == [(1, pytest.approx(0.4))]


def test_switched_off_nothing_is_written(tmp_path):
    curves = open_curves(tmp_path / "fold", enabled=False)
    assert isinstance(curves, NoCurves)
    curves.epoch(1, {"train_loss": 0.5})
    curves.close()
    assert not (tmp_path / "fold").exists()
    # on, but no epoch finished (a fold resumed after its last epoch): no empty event file
    open_curves(tmp_path / "done", enabled=True).close()
    assert not (tmp_path / "done").exists()
