"""Training one fold: a tiny real fit, reproducibility, early stopping with the best weights
restored, the device-side batch transform, and resuming a killed job from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import COLOURS, REPO, class_image
from cvgrid import hardware
from cvgrid.data import save_prepared
from cvgrid.folds import make_folds, split_indices
from cvgrid.io import write_tsv
from cvgrid.models import get_spec
from cvgrid.training import BatchTransform, TrainSettings, fit

HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]
CPU = torch.device("cpu")
# What a job on this machine uses: bf16 on CPUs with native bf16, else fp32.
AUTO = hardware.choose_precision(CPU, "auto")


def settings(**changes) -> TrainSettings:
    base = TrainSettings(model="model_a", batch_size=8, learning_rate=1e-3, augmentation="none",
                         rotation_degrees=0.0, shift_fraction=0.0, zoom_fraction=0.0,
                         max_epochs=3, patience=10, seed=0, repeat=0, fold=0)
    return replace(base, **changes)


def colour_data(n_classes=2, per_class=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    images = np.stack([class_image(rng, COLOURS[k], (size, size)) for k in labels])
    return images, labels


@pytest.fixture(scope="module")
def tiny():
    """2 colours x 16 images of 32 x 32; fold 0 of 2 (12 train, 4 validation, 16 test)."""
    images, labels = colour_data()
    split = split_indices(make_folds(labels, 2, 1, seed=0, validation_fraction=0.25), 0, 0)
    return images, labels, split


def no_seconds(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="seconds")


@pytest.mark.parametrize("precision", sorted({"fp32", AUTO}))
def test_tiny_fit_learns_two_colours_and_reports_its_history(tiny, precision):
    images, labels, split = tiny
    result = fit(images, labels, split, 2, settings(), device=CPU, precision=precision)
    assert list(result.history.columns) == HISTORY_COLUMNS
    assert result.history["epoch"].tolist() == list(range(1, result.epochs_run + 1))
    assert result.epochs_run == 3
    assert 1 <= result.best_epoch <= result.epochs_run
    assert result.history["val_accuracy"].max() == result.history.loc[result.best_epoch - 1, "val_accuracy"]
    assert result.images_trained == 3 * len(split["train"])
    assert result.resumed_from_epoch == 0
    probs = result.test_probabilities
    assert probs.shape == (len(split["test"]), 2)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert result.test_accuracy == pytest.approx(np.mean(probs.argmax(1) == labels[split["test"]]))
    assert result.test_accuracy >= 0.9  # two flat colours are trivially separable
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


@pytest.mark.parametrize("precision", sorted({"fp32", AUTO}))
def test_same_settings_give_identical_results_on_cpu(tiny, precision):
    images, labels, split = tiny
    a = fit(images, labels, split, 2, settings(seed=5), device=CPU, precision=precision)
    b = fit(images, labels, split, 2, settings(seed=5), device=CPU, precision=precision)
    assert a.test_accuracy == b.test_accuracy
    assert a.test_loss == b.test_loss
    assert np.array_equal(a.test_probabilities, b.test_probabilities)
    pd.testing.assert_frame_equal(no_seconds(a.history), no_seconds(b.history), check_exact=True)
    c = fit(images, labels, split, 2, settings(seed=6), device=CPU, precision=precision)
    assert not np.array_equal(a.test_probabilities, c.test_probabilities)  # the seed matters


def test_images_kept_in_host_memory_give_the_same_numbers_as_on_the_device(tiny):
    """The host path (data_on_device False: batches moved one by one) trains exactly as the
    whole array on the device does; on the CPU both are host memory, so the numbers are equal."""
    images, labels, split = tiny
    on_device = fit(images, labels, split, 2, settings(seed=3, augmentation="affine", rotation_degrees=10.0,
                                                       shift_fraction=0.1, zoom_fraction=0.1),
                    device=CPU, precision="fp32")
    from_host = fit(images, labels, split, 2, settings(seed=3, augmentation="affine", rotation_degrees=10.0,
                                                       shift_fraction=0.1, zoom_fraction=0.1),
                    device=CPU, precision="fp32", data_on_device=False)
    assert from_host.test_accuracy == on_device.test_accuracy
    assert np.array_equal(from_host.test_probabilities, on_device.test_probabilities)
    pd.testing.assert_frame_equal(no_seconds(from_host.history), no_seconds(on_device.history), check_exact=True)


def test_a_device_too_small_for_the_images_takes_the_host_path_and_says_so(prepared, tmp_path, monkeypatch, caplog):
    """A faked GPU memory smaller than the array (no GPU here): the job keeps the images in host
    memory, says so in its log and its metrics.json, and scores as the device path does."""
    from cvgrid import job

    def run(out):
        return job.run_folds(fold_settings=[settings(fold=1, max_epochs=2)], images_path=prepared / "images.npy",
                             index_path=prepared / "index.tsv", folds_path=prepared / "folds.tsv", out_dirs=[out],
                             checkpoint_paths=None, precision="fp32", device="cpu", threads=1, checkpoint_seconds=0,
                             tensorboard=False)

    (device_metrics,) = run(tmp_path / "device")
    monkeypatch.setattr(hardware, "fits_on_device", lambda nbytes, device, models: (False, f"{nbytes} bytes > faked 1 MiB free"))
    with caplog.at_level("WARNING"):
        (host_metrics,) = run(tmp_path / "host")
    assert device_metrics["data_on_device"] is True and host_metrics["data_on_device"] is False
    assert "pinned host memory" in caplog.text and "faked 1 MiB free" in caplog.text
    assert host_metrics["accuracy"] == device_metrics["accuracy"] and host_metrics["loss"] == device_metrics["loss"]


def test_early_stopping_stops_after_patience_and_restores_the_best_weights(tiny):
    images, labels, split = tiny
    long = fit(images, labels, split, 2, settings(max_epochs=8, patience=1), device=CPU, precision=AUTO)
    assert long.epochs_run < 8, "validation accuracy kept improving; the test needs a plateau"
    assert long.epochs_run == long.best_epoch + 1  # one epoch of patience, then stop
    # The model scored on the test fold is the best epoch's: the same as a run that ends there.
    short = fit(images, labels, split, 2, settings(max_epochs=8, patience=1), device=CPU, precision=AUTO)
    assert short.test_loss == long.test_loss
    at_best = fit(images, labels, split, 2, settings(max_epochs=long.best_epoch, patience=1), device=CPU, precision=AUTO)
    assert np.array_equal(at_best.test_probabilities, long.test_probabilities)
    assert at_best.test_loss == long.test_loss


def test_the_checkpoint_saver_writes_at_most_every_interval_and_flushes_the_rest(tmp_path):
    """CheckpointSaver, the fit's checkpoint policy: after_epoch keeps the state and writes it
    only when the interval has passed; flush writes what is kept; resume loads it back."""
    from cvgrid.training import CheckpointSaver, FoldRandom, Progress

    def saver(path, interval):
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        progress = Progress()
        return CheckpointSaver(path, settings=settings(), precision="fp32", interval=interval, model=model,
                               optimizer=optimizer, scheduler=None, scaler=torch.amp.GradScaler("cpu", enabled=False),
                               random=FoldRandom(0, CPU), progress=progress)

    path = tmp_path / "fold.pt"
    first = saver(path, interval=3600)
    assert not first.resume()  # no file yet
    first.progress.epoch = 1
    first.after_epoch()
    assert not path.exists()  # kept, not written: the interval has not passed
    first.flush()
    assert path.exists()
    second = saver(path, interval=3600)
    assert second.resume() and second.progress.epoch == 1
    assert torch.equal(second.model.weight, first.model.weight)
    every_epoch = saver(tmp_path / "each.pt", interval=0)
    every_epoch.after_epoch()
    assert (tmp_path / "each.pt").exists() and every_epoch.unsaved is None
    nowhere = saver(None, interval=0)  # without a path it does nothing
    nowhere.after_epoch()
    nowhere.flush()
    assert not nowhere.resume()


def test_a_checkpoint_of_the_same_job_is_resumed_and_one_of_another_job_ignored(tiny, tmp_path):
    images, labels, split = tiny
    checkpoint = tmp_path / "job.pt"
    first = fit(images, labels, split, 2, settings(), device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    assert checkpoint.exists()
    again = fit(images, labels, split, 2, settings(), device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    assert again.resumed_from_epoch == first.epochs_run  # nothing left to train
    assert again.test_loss == first.test_loss
    pd.testing.assert_frame_equal(again.history, first.history)
    other = fit(images, labels, split, 2, settings(learning_rate=5e-4), device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    assert other.resumed_from_epoch == 0
    # A file that is not a checkpoint: either ignored (a fresh start) or refused naming the file.
    checkpoint.write_bytes(b"not a checkpoint")
    try:
        fresh = fit(images, labels, split, 2, settings(), device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    except Exception as error:  # noqa: BLE001 - whichever error, it must say which file
        assert str(checkpoint) in str(error), repr(error)
    else:
        assert fresh.resumed_from_epoch == 0 and fresh.test_loss == first.test_loss


def test_balanced_class_weights_are_the_inverse_class_frequencies_of_the_training_part():
    from sklearn.utils.class_weight import compute_class_weight

    from cvgrid.training import SettingsError, loss_class_weights

    train = np.array([0] * 40 + [1] * 30 + [3] * 10)  # class 2 has no training image
    weights = loss_class_weights("balanced", train, 4)
    # n / (classes x n_class) over the classes trained on; the absent class weighs 1 (no image carries it)
    assert weights.tolist() == pytest.approx([80 / (3 * 40), 80 / (3 * 30), 1.0, 80 / (3 * 10)])
    assert weights[[0, 1, 3]].tolist() == pytest.approx(compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=train))
    assert loss_class_weights("none", train, 4) is None
    with pytest.raises(SettingsError, match="class_weights 'inverse'"):
        loss_class_weights("inverse", train, 4)


def test_class_weights_make_the_validation_accuracy_the_weighted_one_and_leave_the_test_score_plain():
    """Early stopping under class weights follows the weighted validation accuracy: a model that
    gets the three common images right and the rare one wrong scores 3/4 plainly, and with the
    rare class weighing 3 times as much, 3 / (3 + 3) = 1/2."""
    from cvgrid.training import evaluate

    class Fixed(torch.nn.Module):  # always class 0, whatever the image
        def forward(self, x):
            return torch.tensor([[5.0, 0.0]]).expand(len(x), 2)

    data = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1])
    common = dict(model=Fixed(), data=data, labels=labels, indices=torch.arange(4), device=CPU, precision="fp32",
                  batch_size=4, transform=lambda batch, generator=None: batch.float())
    plain_loss, plain, _ = evaluate(**common)
    weighted_loss, weighted, _ = evaluate(**common, class_weights=torch.tensor([1.0, 3.0]))
    assert (plain, weighted) == (pytest.approx(0.75), pytest.approx(0.5))
    assert weighted_loss > plain_loss  # the rare image's large loss weighs 3 times


def test_a_class_weighted_fit_trains_reproducibly_and_a_checkpoint_without_the_key_still_resumes(tiny, tmp_path):
    images, labels, split = tiny
    weighted = settings(class_weights="balanced")
    first = fit(images, labels, split, 2, weighted, device=CPU, precision="fp32")
    again = fit(images, labels, split, 2, weighted, device=CPU, precision="fp32")
    pd.testing.assert_frame_equal(no_seconds(first.history), no_seconds(again.history))
    assert first.test_accuracy == again.test_accuracy
    # A checkpoint of a job written before class_weights existed (its settings lack the key) is
    # the same job as one at class_weights none: it resumes instead of training again.
    checkpoint = tmp_path / "job.pt"
    plain = fit(images, labels, split, 2, settings(), device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert "class_weights" not in state["settings"]  # what older checkpoints hold, too
    resumed = fit(images, labels, split, 2, settings(), device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    assert resumed.resumed_from_epoch == plain.epochs_run
    # and a class-weighted job does not take the plain one's checkpoint
    other = fit(images, labels, split, 2, weighted, device=CPU, precision=AUTO, checkpoint_path=checkpoint)
    assert other.resumed_from_epoch == 0


# --- the batch transform -------------------------------------------------------------------


@pytest.mark.parametrize("stored", [32, 100, 160])
def test_batch_transform_scales_to_unit_range_at_the_model_input_size(stored):
    size = get_spec("model_a").input_size
    batch = torch.randint(0, 256, (5, 3, stored, stored), dtype=torch.uint8, generator=torch.Generator().manual_seed(stored))
    batch[0] = 0
    batch[1] = 255
    out = BatchTransform(size, settings())(batch)
    assert out.shape == (5, 3, size, size)
    assert out.dtype == torch.float32
    # Interpolation mixes pixels: [0, 1] up to float rounding (1.0000001 happens).
    assert out.min() >= -1e-6 and out.max() <= 1.0 + 1e-6
    assert torch.all(out[0] == 0) and torch.allclose(out[1], torch.ones_like(out[1]))
    if stored == size:
        assert torch.equal(out, batch.float() / 255)


def test_augmentation_changes_the_images_not_the_shapes_and_follows_the_generator():
    size = get_spec("model_a").input_size
    images, _ = colour_data(per_class=4, size=size)
    images[:, 10:40, 20:30] = 255  # a white bar, so that geometry shows
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    policy = settings(augmentation="affine", rotation_degrees=20, shift_fraction=0.1, zoom_fraction=0.1)
    assert policy.augments and not settings().augments
    transform = BatchTransform(size, policy)
    plain = transform(batch)
    a = transform(batch, torch.Generator().manual_seed(1))
    b = transform(batch, torch.Generator().manual_seed(1))
    c = transform(batch, torch.Generator().manual_seed(2))
    assert a.shape == plain.shape == (len(images), 3, size, size)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    changed = (a - plain).abs().flatten(1).amax(1)
    assert (changed > 0.2).all(), "every image gets its own transform"
    # Without a policy the "augmented" path is an identity warp: within interpolation error.
    identity = BatchTransform(size, settings())(batch, torch.Generator().manual_seed(1))
    assert torch.allclose(identity, plain, atol=1e-4)


# --- the command-line job: killed, resumed ---------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    images, labels = colour_data(n_classes=3, per_class=24, size=32, seed=3)
    index = pd.DataFrame({"sample": np.arange(len(labels)), "file": [f"c{k}/{i}.png" for i, k in enumerate(labels)],
                          "label": labels, "class_name": [f"c{k}" for k in labels]})
    save_prepared(images, index, root / "images.npy", root / "index.tsv")
    write_tsv(make_folds(labels, 2, 1, seed=42, validation_fraction=0.1), root / "folds.tsv")
    return root


# What the rule passes (cvgrid.grid.point_settings); left-out settings take TrainSettings' defaults.
SETTINGS = {"model": "model_a", "batch_size": 16, "learning_rate": 0.001, "augmentation": "none",
            "rotation_degrees": 0, "shift_fraction": 0, "zoom_fraction": 0, "patience": 10, "seed": 3}


def train_cmd(prepared, out_dir, checkpoint=None, epochs=4, folds=(1,), checkpoint_seconds=None):
    """scripts/train.py on `folds` (of repeat 0) in one process: one output folder (and checkpoint)
    each, given as lists, or as one path for one fold."""
    out_dirs = out_dir if isinstance(out_dir, list) else [out_dir]
    checkpoints = checkpoint if isinstance(checkpoint, list) or checkpoint is None else [checkpoint]
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--images", str(prepared / "images.npy"),
           "--index", str(prepared / "index.tsv"), "--folds", str(prepared / "folds.tsv"),
           "--repeat", *["0"] * len(folds), "--fold", *map(str, folds),
           "--settings", json.dumps({**SETTINGS, "max_epochs": epochs}), "--precision", "auto", "--threads", "2",
           "--out-dir", *map(str, out_dirs)]
    if checkpoint_seconds is not None:
        cmd += ["--checkpoint-seconds", str(checkpoint_seconds)]
    return cmd + (["--checkpoint", *map(str, checkpoints)] if checkpoints else [])


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    """The output folder of one whole run of scripts/train.py (4 epochs, no checkpoint)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(train_cmd(prepared, out), check=True, capture_output=True, timeout=300)
    return out


def test_train_cli_writes_metrics_history_and_predictions(prepared, uninterrupted):
    out = uninterrupted
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "loss", "epochs_run", "best_epoch", "seconds", "images_per_second", "device", "config"):
        assert key in metrics, key
    assert metrics["device"] == "cpu" and metrics["precision"] == AUTO
    assert metrics["config"]["model"] == "model_a" and metrics["config"]["fold"] == 1
    assert metrics["epochs_run"] == 4 and 1 <= metrics["best_epoch"] <= 4
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.columns) == HISTORY_COLUMNS and len(history) == 4
    assert metrics["best_val_accuracy"] == history["val_accuracy"].max()
    # The speed without the warm-up epoch, beside the whole run's; where the fold ran.
    per_epoch = metrics["n_train"]
    assert metrics["images_per_second_after_first_epoch"] == pytest.approx(
        3 * per_epoch / history["seconds"].iloc[1:].sum(), rel=0.01)
    assert metrics["images_per_second"] == pytest.approx(4 * per_epoch / history["seconds"].sum(), rel=0.01)
    assert metrics["hostname"] == socket.gethostname() and metrics["slurm_partition"] is None
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    folds = pd.read_csv(prepared / "folds.tsv", sep="\t")
    test = split_indices(folds, 0, 1)["test"]
    assert metrics["n_test"] == len(test) == len(predictions)
    assert set(predictions["sample"]) == set(test)
    for column in ("sample", "true", "predicted", "probability"):
        assert column in predictions.columns
    index = pd.read_csv(prepared / "index.tsv", sep="\t")
    assert (predictions["true"].to_numpy() == index["label"].to_numpy()[predictions["sample"]]).all()
    assert predictions["probability"].between(1 / 3 - 1e-6, 1).all()
    assert metrics["accuracy"] == pytest.approx((predictions["true"] == predictions["predicted"]).mean())


def test_a_job_killed_after_an_epoch_resumes_to_the_uninterrupted_result(prepared, uninterrupted, tmp_path):
    whole = uninterrupted
    reference = json.loads((whole / "metrics.json").read_text())
    assert reference["resumed_from_epoch"] == 0

    out, checkpoint = tmp_path / "job", tmp_path / "ckpt" / "job.pt"
    process = subprocess.Popen(train_cmd(prepared, out, checkpoint), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert process.poll() is None, f"the job ended before its first checkpoint:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode != 0, stderr
    assert not (out / "metrics.json").exists()
    assert checkpoint.exists(), "the checkpoint must survive the kill"

    subprocess.run(train_cmd(prepared, out, checkpoint), check=True, capture_output=True, timeout=300)
    resumed = json.loads((out / "metrics.json").read_text())
    assert 1 <= resumed["resumed_from_epoch"] < reference["epochs_run"]
    for key in ("accuracy", "loss", "epochs_run", "best_epoch", "best_val_accuracy"):
        assert resumed[key] == reference[key], key
    pd.testing.assert_frame_equal(no_seconds(pd.read_csv(out / "history.tsv", sep="\t")),
                                  no_seconds(pd.read_csv(whole / "history.tsv", sep="\t")))
    pd.testing.assert_frame_equal(pd.read_csv(out / "predictions.tsv", sep="\t"),
                                  pd.read_csv(whole / "predictions.tsv", sep="\t"))
    assert not checkpoint.exists(), "a finished job removes its checkpoint"


def start_and_terminate(cmd, log_file, ready, timeout=120):
    """Run `cmd` with its log in `log_file`; send SIGTERM once `ready(log text)` holds. Returns
    the exit status and the log."""
    with log_file.open("w") as log:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        deadline = time.monotonic() + timeout
        while not ready(log_file.read_text()):
            assert process.poll() is None, f"the job ended before it could be stopped:\n{log_file.read_text()}"
            assert time.monotonic() < deadline, f"not ready after {timeout} s:\n{log_file.read_text()}"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    return process.returncode, log_file.read_text()


def assert_same_fold_results(folder, reference) -> dict:
    """Same metrics, history (but its seconds) and predictions as the run in `reference`."""
    mine, theirs = (json.loads((f / "metrics.json").read_text()) for f in (folder, reference))
    for key in ("accuracy", "loss", "epochs_run", "best_epoch", "best_val_accuracy", "diverged", "config"):
        assert mine[key] == theirs[key], key
    pd.testing.assert_frame_equal(no_seconds(pd.read_csv(folder / "history.tsv", sep="\t")),
                                  no_seconds(pd.read_csv(reference / "history.tsv", sep="\t")), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(folder / "predictions.tsv", sep="\t"),
                                  pd.read_csv(reference / "predictions.tsv", sep="\t"), check_exact=True)
    return mine


def test_sigterm_writes_the_last_finished_epoch_between_timed_checkpoints(prepared, uninterrupted, tmp_path):
    """checkpoint_seconds of an hour: no checkpoint is due during the fit, but SIGTERM (SLURM's
    time limit, scancel) writes the last finished epoch, and the resumed job gives the result of
    one that was never stopped, bit for bit."""
    out, checkpoint = tmp_path / "job", tmp_path / "ckpt" / "job.pt"
    cmd = train_cmd(prepared, out, checkpoint, checkpoint_seconds=3600)
    status, log = start_and_terminate(cmd, tmp_path / "job.log", lambda text: "epoch   1 " in text)
    assert status == 143, log
    assert "epoch   4 " not in log and not (out / "metrics.json").exists()
    assert checkpoint.exists(), "SIGTERM must leave the last finished epoch\n" + log
    assert re.search(r"checkpoint after epoch [1-3] written", log), log

    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    resumed = assert_same_fold_results(out, uninterrupted)
    assert 1 <= resumed["resumed_from_epoch"] < resumed["epochs_run"] == 4
    assert not checkpoint.exists(), "a finished job removes its checkpoint"


def test_a_job_of_several_folds_resumes_at_its_first_unfinished_fold(prepared, uninterrupted, tmp_path):
    """One process trains folds 0 and 1 (training.folds_per_job). Stopped in fold 1, then started
    again without fold 0's results (Snakemake deletes a failed job's outputs): fold 0 is scored
    from its checkpoint without training, fold 1 resumes from its last epoch, and both equal
    jobs of one fold each, bit for bit."""
    fold0 = tmp_path / "fold0_alone"
    subprocess.run(train_cmd(prepared, fold0, folds=(0,)), check=True, capture_output=True, timeout=300)

    outs = [tmp_path / "job" / "fold0", tmp_path / "job" / "fold1"]
    checkpoints = [tmp_path / "ckpt" / "fold0.pt", tmp_path / "ckpt" / "fold1.pt"]
    cmd = train_cmd(prepared, outs, checkpoints, folds=(0, 1), checkpoint_seconds=3600)
    fold1_started = re.compile(r"fold=1 on cpu.*\n(.*\n)*.*epoch   1 ")
    status, log = start_and_terminate(cmd, tmp_path / "first.log", lambda text: fold1_started.search(text))
    assert status == 143, log
    assert (outs[0] / "metrics.json").exists() and not (outs[1] / "metrics.json").exists()
    assert all(c.exists() for c in checkpoints), "a finished fold keeps its checkpoint until the job ends"
    for name in ("metrics.json", "history.tsv", "predictions.tsv"):
        (outs[0] / name).unlink()  # what Snakemake does with the outputs of a failed job

    second = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    first_fold = assert_same_fold_results(outs[0], fold0)
    second_fold = assert_same_fold_results(outs[1], uninterrupted)
    # Fold 0 was not trained again: it resumed after its last epoch and logged no epoch.
    assert first_fold["resumed_from_epoch"] == first_fold["epochs_run"] == 4
    fold0_part = second.stderr[: second.stderr.index("fold=1 on cpu")]
    assert "resuming" in fold0_part and "epoch   " not in fold0_part, fold0_part
    assert 1 <= second_fold["resumed_from_epoch"] < 4
    assert not any(c.exists() for c in checkpoints), "the job removes its checkpoints at its end"


# --- the real photos -----------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.slow
def test_model_a_learns_the_real_sign_language_digits(real_data_dir):
    """A third of the photos (every class), fold 0 of 5, 4 epochs: far above the 10% of chance."""
    from cvgrid.data import list_images, load_image

    torch.set_num_threads(2)
    index = list_images(real_data_dir).index
    assert index["label"].nunique() == 10
    subset = index[index.groupby("label").cumcount() % 3 == 0].reset_index(drop=True)
    images = np.stack([load_image(real_data_dir / f, 100) for f in subset["file"]])
    labels = subset["label"].to_numpy()
    split = split_indices(make_folds(labels, 5, 1, seed=42, validation_fraction=0.1), 0, 0)
    result = fit(images, labels, split, 10, settings(batch_size=32, learning_rate=1e-3, max_epochs=4), device=CPU, precision=AUTO)
    assert result.epochs_run == 4
    assert result.test_accuracy > 0.5, result.history.to_string()
    assert result.history["train_accuracy"].iloc[-1] > result.history["train_accuracy"].iloc[0]


def test_the_augmentation_grid_is_torchs_affine_grid():
    """BatchTransform builds the affine sampling grid itself (cheaper on CPU); it must be the one
    F.affine_grid gives for the same random draws."""
    import torch.nn.functional as F

    from cvgrid.training import BatchTransform

    settings = TrainSettings(model="model_a", batch_size=8, learning_rate=1e-3, augmentation="affine",
                             rotation_degrees=20, shift_fraction=0.1, zoom_fraction=0.1, max_epochs=1,
                             patience=1, seed=0, repeat=0, fold=0)
    transform = BatchTransform(64, settings)
    x = torch.rand(6, 3, 48, 48)
    ours = transform.augment(x, torch.Generator().manual_seed(3))
    u = torch.rand(6, 5, generator=torch.Generator().manual_seed(3)).mul_(2).sub_(1)
    angle = u[:, 0] * transform.rotation
    zoom_x, zoom_y = 1 + u[:, 1] * transform.zoom, 1 + u[:, 2] * transform.zoom
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * zoom_x, -sin * zoom_y, u[:, 3] * transform.shift], 1),
                         torch.stack([sin * zoom_x, cos * zoom_y, u[:, 4] * transform.shift], 1)], 1)
    grid = F.affine_grid(theta, [6, 3, 64, 64], align_corners=False)
    reference = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert ours.shape == (6, 3, 64, 64)
    assert torch.allclose(ours, reference, atol=1e-4)


def test_the_fp16_path_with_its_gradient_scaler_trains_and_resumes(tiny, tmp_path):
    """fp16 + GradScaler is what CUDA GPUs without bf16 get; CPU autocast runs the same code,
    so the scaler's part of the step and of the checkpoint is exercised without a GPU."""
    images, labels, split = tiny
    checkpoint = tmp_path / "job.pt"
    result = fit(images, labels, split, 2, settings(), device=CPU, precision="fp16", checkpoint_path=checkpoint)
    assert result.test_accuracy >= 0.9
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
    scaler = torch.load(checkpoint, weights_only=True)["scaler"]
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0, scaler  # an enabled scaler's state
    again = fit(images, labels, split, 2, settings(), device=CPU, precision="fp16", checkpoint_path=checkpoint)
    assert again.resumed_from_epoch == result.epochs_run and again.test_loss == result.test_loss


# --- several folds at the same time (training.parallel_folds) -------------------------------


def test_fold_dropout_draws_what_torchs_dropout_draws_on_the_cpu():
    """FoldDropout (a fold's own generator) in the state of torch's global generator gives
    nn.Dropout's numbers bit for bit, forward and backward: CPU results of before stay the same.
    dropout_from puts the model's nn.Dropout back after the block, and refuses a layer that would
    still draw from the global generator."""
    from torch import nn

    from cvgrid.training import FoldDropout, SettingsError, dropout_from

    x = torch.randn(64, 256)
    torch.manual_seed(5)
    mine = FoldDropout(0.3, torch.Generator().manual_seed(0))
    mine.generator.set_state(torch.get_rng_state())
    theirs = nn.Dropout(0.3)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_mine, out_theirs = mine(a), theirs(b)
    assert torch.equal(out_mine, out_theirs) and (out_mine == 0).any()
    out_mine.sum().backward()
    out_theirs.sum().backward()
    assert torch.equal(a.grad, b.grad)
    assert torch.equal(mine.eval()(x), x)

    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2)))
    with dropout_from(model, torch.Generator(), beside_others=False):
        assert type(model[1][0]) is FoldDropout and model[1][0].p == 0.5
    assert type(model[1][0]) is nn.Dropout
    # A layer drawing from the global generator: refused beside other folds only (a model of the
    # user's with Dropout2d still trains one fold at a time, as it always did).
    spatial = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.Dropout2d(0.1)))
    with dropout_from(spatial, torch.Generator(), beside_others=False):
        assert type(spatial[1][0]) is nn.Dropout2d
    with pytest.raises(SettingsError, match=r"1\.0 \(Dropout2d\)"):
        with dropout_from(spatial, torch.Generator(), beside_others=True):
            pass


def test_parallel_folds_mean_one_on_the_cpu_and_at_most_the_jobs_folds_on_a_gpu(caplog):
    from cvgrid.job import SettingsError, parallel_folds_on

    with caplog.at_level("INFO"):
        assert parallel_folds_on(CPU, 4, 5) == 1
    assert "training.parallel_folds 4 means 1 on cpu" in caplog.text
    assert parallel_folds_on(CPU, 1, 5) == 1
    gpu = torch.device("cuda", 0)  # a device name only: nothing runs on it
    assert parallel_folds_on(gpu, 4, 5) == 4 and parallel_folds_on(gpu, 8, 5) == 5 and parallel_folds_on(gpu, 1, 5) == 1
    with pytest.raises(SettingsError, match="parallel_folds is 0"):
        parallel_folds_on(gpu, 0, 5)


# Folds trained by the library (cvgrid.job.train_folds), `parallel` at once, in a process of their
# own (SIGTERM), with train_cmd's threads: argv = prepared folder, parallel, settings JSON, then
# out_dir:checkpoint per fold.
TRAIN_FOLDS = """
import json, sys
from pathlib import Path
from cvgrid import job
from cvgrid.training import settings_from_json

job.configure_logging()
root, parallel, values = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
pairs = [arg.split(":") for arg in sys.argv[4:]]
folds = [settings_from_json(values, repeat=0, fold=f) for f in range(len(pairs))]
with job.training_job(images_path=root / "images.npy", index_path=root / "index.tsv", precision="auto",
                      device="cpu", threads=2, checkpoint_seconds=3600, tensorboard=False) as running:
    job.train_folds(running, folds, folds_path=root / "folds.tsv", out_dirs=[Path(o) for o, c in pairs],
                    checkpoint_paths=[Path(c) for o, c in pairs], parallel=parallel)
"""


def train_folds_cmd(prepared, folder, parallel, **changes):
    values = {**SETTINGS, "max_epochs": 4, **changes}
    return [sys.executable, "-c", TRAIN_FOLDS, str(prepared), str(parallel), json.dumps(values),
            *(f"{folder}/fold{f}:{folder}/ckpt/fold{f}.pt" for f in range(2))]


def test_folds_trained_at_the_same_time_give_each_fold_its_result_alone(prepared, tmp_path):
    """Both folds of the prepared set in two threads of one job (what a GPU job does with
    training.parallel_folds 2), with augmentation and dropout (each fold's own random streams):
    each fold's metrics, history and predictions are those of the folds trained one at a time,
    bit for bit, on the CPU."""
    affine = {"augmentation": "affine", "rotation_degrees": 15, "shift_fraction": 0.1, "zoom_fraction": 0.1}
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    for parallel in (1, 2):
        result = subprocess.run(train_folds_cmd(prepared, tmp_path / f"p{parallel}", parallel, **affine),
                                capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr
    assert "training 2 folds, 2 at the same time" in result.stderr
    assert "[fold r0f1] epoch   1 " in result.stderr  # the log names the fold of each line
    for fold in range(2):
        at_once = assert_same_fold_results(tmp_path / "p2" / f"fold{fold}", tmp_path / "p1" / f"fold{fold}")
        assert at_once["parallel_folds"] == 2 and at_once["config"]["augmentation"] == "affine"
    alone = json.loads((tmp_path / "p1" / "fold0" / "metrics.json").read_text())
    assert alone["parallel_folds"] == 1


def test_sigterm_stops_folds_trained_at_once_and_the_retry_resumes_both(prepared, uninterrupted, tmp_path):
    """SIGTERM (SLURM's time limit) while two folds train at the same time: the job exits 143,
    each fold leaves its last finished epoch in its checkpoint, and the retry gives fold 1 the
    result of the uninterrupted one-fold run, bit for bit."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    cmd = train_folds_cmd(prepared, tmp_path, 2)
    both_trained = re.compile(r"\[fold r0f0\] epoch   1 (.*\n)*.*\[fold r0f1\] epoch   1 "
                              r"|\[fold r0f1\] epoch   1 (.*\n)*.*\[fold r0f0\] epoch   1 ")
    with (tmp_path / "first.log").open("w") as log:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + 300
        while not both_trained.search((tmp_path / "first.log").read_text()):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=120)
    first = (tmp_path / "first.log").read_text()
    if process.returncode == 0:
        pytest.fail(f"both folds ended before SIGTERM arrived; make the fit longer:\n{first}")
    assert process.returncode == 143, first
    assert all((tmp_path / "ckpt" / f"fold{f}.pt").exists() for f in range(2)), first
    for fold in range(2):
        if not (tmp_path / f"fold{fold}" / "metrics.json").exists():
            assert f"fold={fold} stopped" in first, first
        for name in ("metrics.json", "history.tsv", "predictions.tsv"):
            (tmp_path / f"fold{fold}" / name).unlink(missing_ok=True)  # what Snakemake does

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    resumed = assert_same_fold_results(tmp_path / "fold1", uninterrupted)
    assert resumed["resumed_from_epoch"] >= 1
    assert not any((tmp_path / "ckpt" / f"fold{f}.pt").exists() for f in range(2))
