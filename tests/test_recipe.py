"""The training recipe beyond the reference grid's four axes: optimizer, weight decay, label
smoothing, learning-rate schedule with warm-up, dropout and model options, the training seed
and test-time augmentation, each reaching the fit, reproducible, and resumable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvgrid import training
from cvgrid.folds import make_folds, split_indices
from cvgrid.models import build_model, count_trainable_parameters, get_spec
from cvgrid.training import (SettingsError, TrainSettings, evaluate, fit, lr_factor, make_optimizer,
                             make_scheduler, settings_from_json, shifted_views)
from test_training import colour_data, settings

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    images, labels = colour_data()
    split = split_indices(make_folds(labels, 2, 1, seed=0, validation_fraction=0.25), 0, 0)
    return images, labels, split


def test_the_defaults_are_the_reference_recipe():
    s = settings()
    optimizer = make_optimizer(s, [torch.nn.Parameter(torch.zeros(1))])
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["weight_decay"] == 0
    assert make_scheduler(s, optimizer, steps_per_epoch=5) is None  # constant, no warm-up: no scheduler
    assert (s.label_smoothing, s.tta, s.dropout, s.build_options()) == (0.0, "none", None, {})


def test_optimizers_are_the_named_ones_with_their_weight_decay():
    p = [torch.nn.Parameter(torch.zeros(1))]
    adamw = make_optimizer(settings(optimizer="adamw", weight_decay=0.05), p)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.05
    sgd = make_optimizer(settings(optimizer="sgd", weight_decay=1e-4), p)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    with pytest.raises(SettingsError, match="rmsprop"):
        make_optimizer(settings(optimizer="rmsprop"), p)


def test_cosine_schedule_warms_up_linearly_then_falls_to_zero():
    assert [lr_factor("cosine", s, 100, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor("cosine", 4, 100, 4) == 1.0
    assert lr_factor("cosine", 52, 100, 4) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 100, 4) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("constant", 50, 100, 0) == 1.0
    with pytest.raises(SettingsError, match="linear"):
        lr_factor("linear", 0, 100, 0)


def learning_rates(s: TrainSettings, steps_per_epoch: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer(s, [param])
    scheduler = make_scheduler(s, optimizer, steps_per_epoch)
    rates = []
    for _ in range(s.max_epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_schedules_peak_at_the_learning_rate_and_end_near_zero(schedule):
    s = settings(schedule=schedule, warmup_epochs=2, max_epochs=10, learning_rate=0.01)
    rates = learning_rates(s, steps_per_epoch=7)
    assert len(rates) == 70
    peak = int(np.argmax(rates))
    assert max(rates) == pytest.approx(0.01, rel=1e-3)
    assert 12 <= peak <= 14  # the end of the two warm-up epochs (14 steps)
    assert rates[0] < 0.01 / 5 and rates[-1] < 0.01 / 50


def test_shifted_views_move_the_image_by_five_percent_with_edges_repeated():
    x = torch.zeros(1, 3, 40, 40)
    x[0, :, 20, 20] = 1.0
    views = shifted_views(x)
    assert len(views) == 5 and all(v.shape == x.shape for v in views)
    spots = [tuple(int(i) for i in torch.nonzero(v[0, 0])[0]) for v in views]
    assert spots == [(20, 20), (20, 22), (20, 18), (22, 20), (18, 20)]  # d = round(0.05 * 40) = 2
    edge = torch.arange(40.0).repeat(1, 3, 40, 1)  # columns 0..39
    assert shifted_views(edge)[1][0, 0, 0, :3].tolist() == [0.0, 0.0, 0.0]  # left edge repeated


def test_tta_scores_the_mean_probability_over_the_five_views(tiny):
    images, labels, split = tiny
    model = build_model("model_a", 2).eval()
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    labels_t = torch.from_numpy(labels)
    idx = torch.from_numpy(split["test"])
    transform = training.BatchTransform(get_spec("model_a").input_size, settings())
    common = dict(data=data, labels=labels_t, indices=idx, transform=transform, device=CPU, precision="fp32",
                  batch_size=512)
    _, _, plain = evaluate(model, **common)
    _, accuracy, tta = evaluate(model, **common, tta="shifts")
    with torch.inference_mode():
        expected = torch.stack([torch.softmax(model(v), 1) for v in shifted_views(transform(data[idx]))]).mean(0)
    assert torch.allclose(tta, expected, atol=1e-6)
    assert not torch.allclose(tta, plain)
    assert accuracy == pytest.approx((tta.argmax(1) == labels_t[idx]).float().mean().item())


def test_model_options_and_dropout_build_the_variant():
    wide = build_model("model_a", 10, options={"width": 48})
    assert count_trainable_parameters(wide) > count_trainable_parameters(build_model("model_a", 10))
    assert build_model("model_a", 10, options={"dropout": 0.5})[4][2].p == 0.5
    assert settings(dropout=0.1, model_options={"width": 16}).build_options() == {"width": 16, "dropout": 0.1}
    with pytest.raises(ValueError, match="depth"):
        build_model("model_a", 10, options={"depth": 3})
    assert get_spec("model_a").options == {"dropout": 0.3, "width": 32}
    assert get_spec("resnet18").options == {}


def test_settings_from_json_names_an_unknown_key():
    values = {"model": "model_a", "batch_size": 8, "learning_rate": 1e-3, "augmentation": "none",
              "rotation_degrees": 0, "shift_fraction": 0, "zoom_fraction": 0, "max_epochs": 1, "patience": 1,
              "seed": 0}
    assert settings_from_json(values, repeat=0, fold=1).fold == 1
    with pytest.raises(SettingsError, match="momentum"):
        settings_from_json({**values, "momentum": 0.9}, repeat=0, fold=0)


CHANGES = {
    "optimizer": {"optimizer": "adamw", "weight_decay": 0.05},
    "sgd": {"optimizer": "sgd", "learning_rate": 0.01},
    "weight_decay": {"weight_decay": 0.01},
    "label_smoothing": {"label_smoothing": 0.1},
    "schedule": {"schedule": "cosine", "warmup_epochs": 1},
    "onecycle": {"schedule": "onecycle"},
    "dropout": {"dropout": 0.0},
    "width": {"model_options": {"width": 8}},
    "seed": {"seed": 1},
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_setting_changes_the_fit_and_the_same_setting_repeats_it(tiny, name):
    images, labels, split = tiny
    reference = fit(images, labels, split, 2, settings(), device=CPU, precision="fp32")
    changed = settings(**CHANGES[name])
    first = fit(images, labels, split, 2, changed, device=CPU, precision="fp32")
    again = fit(images, labels, split, 2, changed, device=CPU, precision="fp32")
    assert first.history["train_loss"].tolist() == again.history["train_loss"].tolist()
    assert np.array_equal(first.test_probabilities, again.test_probabilities)
    assert first.history["train_loss"].tolist() != reference.history["train_loss"].tolist()


class Stop(Exception):
    pass


def test_a_fit_with_a_schedule_resumes_from_its_checkpoint_as_if_never_stopped(tiny, tmp_path, monkeypatch):
    images, labels, split = tiny
    s = settings(schedule="onecycle", optimizer="adamw", weight_decay=0.01, max_epochs=4)
    whole = fit(images, labels, split, 2, s, device=CPU, precision="fp32")

    real_epoch, calls = training.train_epoch, []

    def stop_in_the_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Stop()
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_in_the_third_epoch)
    checkpoint = tmp_path / "fold.pt"
    with pytest.raises(Stop):
        fit(images, labels, split, 2, s, device=CPU, precision="fp32", checkpoint_path=checkpoint, checkpoint_seconds=0)
    monkeypatch.setattr(training, "train_epoch", real_epoch)
    resumed = fit(images, labels, split, 2, s, device=CPU, precision="fp32", checkpoint_path=checkpoint, checkpoint_seconds=0)
    assert resumed.resumed_from_epoch == 2
    assert resumed.history.drop(columns="seconds").equals(whole.history.drop(columns="seconds"))
    assert np.array_equal(resumed.test_probabilities, whole.test_probabilities)


def test_an_unknown_tta_mode_stops_the_fit_before_training(tiny):
    images, labels, split = tiny
    with pytest.raises(SettingsError, match="flip"):
        fit(images, labels, split, 2, settings(tta="flip"), device=CPU, precision="fp32")
    assert math.isfinite(fit(images, labels, split, 2, settings(tta="shifts", max_epochs=1), device=CPU, precision="fp32").test_loss)
