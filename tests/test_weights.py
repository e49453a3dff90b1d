"""Pretrained weights, offline: the hash convention (checked against torch.hub and
torchvision), downloading from a local file:// URL with the real hash check, loading a file
into the backbone (and the clear errors for files that do not fit or are no checkpoints), a
training job that starts from the file, ResNet-18, and the workflow: the dry run of the
reference config, and the "missing and offline" stop before any training.

No test touches the network: the weights files are written here from freshly initialised
torchvision models and named, like torchvision's, after their own SHA256 prefix."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import COLOURS, REPO, class_image, write_config, write_image_folder
from cvgrid import training
from cvgrid.data import save_prepared
from cvgrid.folds import make_folds, split_indices
from cvgrid.grid import AUGMENTATION_KEYS
from cvgrid.io import write_tsv
from cvgrid.models import build_model, count_trainable_parameters, get_spec
from cvgrid.training import TrainSettings, fit
from cvgrid.weights import (
    HASH_REGEX,
    WeightsError,
    fetch,
    file_name,
    hash_prefix,
    torchvision_url,
)
from cvgrid.plan import plan_weights

CPU = torch.device("cpu")
MOBILENET_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hash_named(path: Path, stem: str) -> Path:
    """Rename `path` to STEM-<first 8 hex digits of its SHA256>.pth, torchvision's form."""
    named = path.with_name(f"{stem}-{sha256(path)[:8]}.pth")
    path.rename(named)
    return named


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    """A MobileNetV2 ImageNet-style file (1000-class classifier included) from a fresh,
    seeded torchvision model; (path, its state dict)."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(1234)
    state = mobilenet_v2().state_dict()
    raw = tmp_path_factory.mktemp("server") / "mobilenet_v2.pth"
    torch.save(state, raw)
    return hash_named(raw, "mobilenet_v2"), state


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    from torchvision.models import resnet18

    torch.manual_seed(4321)
    state = resnet18().state_dict()
    raw = tmp_path_factory.mktemp("server") / "resnet18.pth"
    torch.save(state, raw)
    return hash_named(raw, "resnet18"), state


# ------------------------------------------------------------------ the hash convention

def test_hash_convention_is_torch_hubs_and_the_registry_names_torchvisions_files():
    import torch.hub

    assert HASH_REGEX.pattern == torch.hub.HASH_REGEX.pattern
    assert torchvision_url(get_spec("model_b").pretrained.weights) == MOBILENET_URL
    assert torchvision_url(get_spec("resnet18").pretrained.weights) == RESNET18_URL
    # The registry writes the URLs out (no torch import when the workflow is planned).
    assert get_spec("model_b").pretrained.url == MOBILENET_URL
    assert get_spec("resnet18").pretrained.url == RESNET18_URL
    for url, prefix in ((MOBILENET_URL, "b0353104"), (RESNET18_URL, "f37072fd")):
        name = file_name(url)
        assert hash_prefix(name) == prefix == torch.hub.HASH_REGEX.search(name).group(1)
    assert file_name("file:///srv/models/mobilenet_v2-b0353104.pth?x=1") == "mobilenet_v2-b0353104.pth"


@pytest.mark.parametrize("name", ["weights.pth", "fold-1.pt", "model-.pth", "net-abc.pth"])
def test_a_name_without_a_full_hash_prefix_is_refused(name):
    # torch.hub would check "1", "" or "abc": next to nothing.
    with pytest.raises(WeightsError, match="SHA256 prefix"):
        hash_prefix(name)


def test_unknown_torchvision_weights_are_named():
    with pytest.raises(WeightsError, match="No_Such_Weights"):
        torchvision_url("No_Such_Weights.IMAGENET1K_V1")


def test_the_plan_fetches_each_file_once_and_names_config_mistakes(tmp_path, monkeypatch):
    config = {
        "models": {"model_a": {}, "model_b": {"pretrained": "imagenet"}, "resnet18": {"pretrained": "imagenet"}},
        "grid": {"model": ["model_a", "model_b"]},
    }
    weights, fetches = plan_weights(config)  # resnet18 is not in the grid: nothing for it
    assert weights == {"model_b": {"path": "resources/weights/mobilenet_v2-b0353104.pth", "url": MOBILENET_URL}}
    assert fetches == {"mobilenet_v2-b0353104.pth": {"url": MOBILENET_URL, "models": ["model_b"]}}
    config["grid"]["model"].append("resnet18")
    assert plan_weights(config)[1]["resnet18-f37072fd.pth"]["url"] == RESNET18_URL

    def plan(model, **entry):
        return plan_weights({"models": {model: {"pretrained": "imagenet", **entry}}, "grid": {"model": [model]}})

    with pytest.raises(WeightsError, match="registry entry of model_a"):
        plan("model_a")
    with pytest.raises(WeightsError, match="SHA256 prefix"):
        plan("model_b", weights_url="https://mirror.example/mobilenet_v2.pth")
    with pytest.raises(WeightsError, match="models.model_b.weights_file is mine.pth"):
        plan("model_b", weights_file="mine.pth")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.pth").write_bytes(b"x")
    assert plan("model_b", weights_file="mine.pth") == ({"model_b": {"path": "mine.pth", "url": None}}, {})


# ------------------------------------------------------------------ download

def test_fetch_from_a_file_url_checks_the_hash_and_keeps_the_file(mobilenet_file, tmp_path):
    source, _ = mobilenet_file
    dest = tmp_path / "resources" / "weights" / source.name
    assert fetch(source.as_uri(), dest) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == [source.name]


def test_a_hash_mismatch_fails_and_leaves_nothing_behind(mobilenet_file, tmp_path):
    source, _ = mobilenet_file
    wrong = "0" * 8 if not sha256(source).startswith("0" * 8) else "1" * 8
    served = tmp_path / "server" / f"mobilenet_v2-{wrong}.pth"
    served.parent.mkdir()
    shutil.copyfile(source, served)
    dest = tmp_path / "weights" / served.name
    with pytest.raises(WeightsError, match=f"does not begin with {wrong}"):
        fetch(served.as_uri(), dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file either
    # An explicit expected hash is checked the same way.
    with pytest.raises(WeightsError, match="does not begin with"):
        fetch(source.as_uri(), tmp_path / "weights" / source.name, expected_hash=wrong)
    assert list(dest.parent.iterdir()) == []


def test_fetch_cli_offline_says_what_to_download_and_where(tmp_path):
    url = (tmp_path / "nowhere" / "mobilenet_v2-b0353104.pth").as_uri()
    dest = tmp_path / "resources" / "weights" / "mobilenet_v2-b0353104.pth"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fetch_weights.py"), "--url", url, "--dest", str(dest),
         "--config-hint", "models.model_b.weights_file"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    message = result.stderr
    assert url in message and str(dest) in message
    assert "b0353104" in message and "models.model_b.weights_file" in message
    assert not dest.exists()


# ------------------------------------------------------------------ loading

def backbone_equals_file(model, state: dict, prefix: str = "", skip=()) -> bool:
    return all(
        torch.equal(value, state[prefix + key])
        for key, value in model.state_dict().items()
        if not any(key.startswith(s) for s in skip)
    )


def test_model_b_backbone_is_the_files_features_and_the_head_is_new(mobilenet_file):
    path, state = mobilenet_file
    torch.manual_seed(0)
    model = build_model("model_b", 10, weights_path=path).model  # inside the input normalisation
    assert backbone_equals_file(model[0], state, prefix="features.")
    assert model[-1][-1].out_features == 10
    torch.manual_seed(0)
    assert not backbone_equals_file(build_model("model_b", 10)[0], state, prefix="features.")  # control


def test_resnet18_gets_everything_but_fc_from_its_file(resnet18_file):
    path, state = resnet18_file
    model = build_model("resnet18", 7, weights_path=path).model
    assert backbone_equals_file(model, state, skip=("fc.",))
    assert model.fc.out_features == 7 and state["fc.weight"].shape[0] == 1000


@pytest.mark.parametrize("name", ["model_b", "resnet18"])
def test_a_pretrained_model_normalises_its_input_as_its_weights_expect(name):
    from torchvision.models import get_weight

    spec = get_spec(name)
    expected = get_weight(spec.pretrained.weights).transforms()  # torchvision's own preprocessing
    assert (list(spec.pretrained.mean), list(spec.pretrained.std)) == (list(expected.mean), list(expected.std))
    torch.manual_seed(0)
    normalized = build_model(name, 10, normalize_input=True).eval()
    x = torch.rand(2, 3, spec.input_size, spec.input_size)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (expected.mean, expected.std))
    with torch.no_grad():
        assert torch.allclose(normalized(x), normalized.model((x - mean) / std))
    # From scratch, a model takes [0, 1] as it is.
    assert not hasattr(build_model(name, 10), "mean")


def test_a_file_of_another_network_names_the_file_and_the_first_missing_key(resnet18_file):
    path, _ = resnet18_file
    with pytest.raises(WeightsError, match=re.escape(str(path)) + r".*features\.0\.0\.weight"):
        build_model("model_b", 10, weights_path=path)


def test_a_wrong_shape_and_an_extra_key_are_named(mobilenet_file, tmp_path):
    _, state = mobilenet_file
    bad_shape = dict(state)
    bad_shape["features.1.conv.1.weight"] = torch.zeros(3, 3)
    torch.save(bad_shape, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"features\.1\.conv\.1\.weight has shape \(3, 3\)"):
        build_model("model_b", 10, weights_path=tmp_path / "shape.pth")
    extra = {**state, "features.99.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"extra\.pth.*features\.99\.weight"):
        build_model("model_b", 10, weights_path=tmp_path / "extra.pth")


def test_files_without_num_batches_tracked_still_load(mobilenet_file, tmp_path):
    # Files saved by torch < 0.4.1 have no BatchNorm counters; BatchNorm fills them itself.
    _, state = mobilenet_file
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    model = build_model("model_b", 10, weights_path=tmp_path / "old.pth").model
    assert backbone_equals_file(model[0], {**state}, prefix="features.")


def test_a_file_in_the_legacy_serialization_loads(mobilenet_file, tmp_path):
    # Older torchvision files (2018, e.g. mobilenet_v2-b0353104.pth) predate the zip format.
    _, state = mobilenet_file
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert not __import__("zipfile").is_zipfile(tmp_path / "legacy.pth")
    model = build_model("model_b", 10, weights_path=tmp_path / "legacy.pth").model
    assert backbone_equals_file(model[0], state, prefix="features.")


class NotAllowed:  # weights_only=True refuses to unpickle arbitrary classes
    pass


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"<html>404 Not Found</html>\n", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
        ("object", "not a PyTorch checkpoint"),
        ("list", "not a state dict"),
        ("empty", "not a state dict"),
    ],
)
def test_a_file_that_is_no_state_dict_gives_a_clear_error(tmp_path, content, fragment):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save({"object": {"x": NotAllowed()}, "list": [torch.zeros(1)], "empty": {}}[content], path)
    with pytest.raises(WeightsError, match=re.escape(str(path)) + ".*" + fragment):
        build_model("model_b", 10, weights_path=path)


def test_missing_file_and_a_model_without_pretrained_weights_are_refused(mobilenet_file, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("model_b", 10, weights_path=tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="model_a"):
        build_model("model_a", 10, weights_path=mobilenet_file[0])


# ------------------------------------------------------------------ training from the file

def tiny_settings(**changes) -> TrainSettings:
    base = TrainSettings(model="model_b", batch_size=8, learning_rate=1e-3, augmentation="none",
                         rotation_degrees=0.0, shift_fraction=0.0, zoom_fraction=0.0,
                         max_epochs=1, patience=5, seed=0, repeat=0, fold=0)
    return replace(base, **changes)


@pytest.fixture(scope="module")
def tiny():
    """2 colours x 8 images of 32 x 32, fold 0 of 2."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 8)
    images = np.stack([class_image(rng, COLOURS[k], (32, 32)) for k in labels])
    split = split_indices(make_folds(labels, 2, 1, seed=0, validation_fraction=0.25), 0, 0)
    return images, labels, split


def test_a_training_job_starts_from_the_file(tiny, mobilenet_file, monkeypatch):
    path, state = mobilenet_file
    images, labels, split = tiny
    built = []

    def recording_build(name, num_classes, weights_path=None, options=None):
        model = build_model(name, num_classes, weights_path=weights_path, options=options)
        built.append({k: v.detach().clone() for k, v in model.model[0].state_dict().items()})
        return model

    monkeypatch.setattr(training, "build_model", recording_build)
    result = fit(images, labels, split, 2, tiny_settings(weights=str(path)), device=CPU, precision="fp32")
    assert len(built) == 1
    before = built[0]
    # Before the first step, the job's backbone is the file's, every parameter and buffer.
    assert before.keys() == {k[len("features."):] for k in state if k.startswith("features.")}
    assert all(torch.equal(v, state["features." + k]) for k, v in before.items())
    # ... and training then moved it.
    after = result.model.model[0].state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before if after[k].is_floating_point())


def test_train_cli_passes_weights_and_stops_clearly_on_a_bad_file(tiny, mobilenet_file, resnet18_file, tmp_path):
    images, labels, _ = tiny
    index = pd.DataFrame({"sample": np.arange(len(labels)), "file": [f"c{k}/{i}.png" for i, k in enumerate(labels)],
                          "label": labels, "class_name": [f"c{k}" for k in labels]})
    save_prepared(images, index, tmp_path / "images.npy", tmp_path / "index.tsv")
    write_tsv(make_folds(labels, 2, 1, seed=42, validation_fraction=0.25), tmp_path / "folds.tsv")

    def train(weights: Path, out: str):
        cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--images", str(tmp_path / "images.npy"),
               "--index", str(tmp_path / "index.tsv"), "--folds", str(tmp_path / "folds.tsv"), "--repeat", "0",
               "--fold", "0", "--settings", json.dumps({
                   "model": "model_b", "batch_size": 8, "learning_rate": 1e-3, "augmentation": "none",
                   **dict.fromkeys(AUGMENTATION_KEYS, 0), "max_epochs": 1, "patience": 10, "seed": 0}),
               "--precision", "fp32", "--threads", "1",
               "--weights", str(weights), "--out-dir", str(tmp_path / out)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    good = train(mobilenet_file[0], "good")
    assert good.returncode == 0, good.stderr
    assert json.loads((tmp_path / "good" / "metrics.json").read_text())["config"]["weights"] == str(mobilenet_file[0])
    bad = train(resnet18_file[0], "bad")
    assert bad.returncode != 0
    assert "error: weights file" in bad.stderr and "features.0.0.weight" in bad.stderr
    assert not (tmp_path / "bad" / "metrics.json").exists()


def test_resnet18_builds_and_trains_one_tiny_step(tiny):
    spec = get_spec("resnet18")
    assert spec.input_size == 128
    torch.manual_seed(0)
    model = build_model("resnet18", 10)
    assert count_trainable_parameters(model) == 11_176_512 + 512 * 10 + 10
    images, labels, split = tiny
    result = fit(images, labels, split, 2, tiny_settings(model="resnet18", batch_size=4), device=CPU, precision="fp32")
    assert result.epochs_run == 1 and np.isfinite(result.history["train_loss"]).all()
    assert result.test_probabilities.shape == (len(split["test"]), 2)


# ------------------------------------------------------------------ the workflow

def reference_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def dry_run_jobs(output: str) -> list[dict]:
    """The jobs of `snakemake -n` output: rule, input and wildcards of each."""
    jobs, job = [], None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("rule ") and stripped.endswith(":"):
            job = {"rule": stripped[5:-1], "input": [], "wildcards": {}}
            jobs.append(job)
        elif job is not None and stripped.startswith("input: "):
            job["input"] = stripped[len("input: "):].split(", ")
        elif job is not None and stripped.startswith("wildcards: "):
            job["wildcards"] = dict(kv.split("=", 1) for kv in stripped[len("wildcards: "):].split(", "))
    return jobs


def test_reference_dry_run_fetches_once_and_model_b_jobs_need_the_file(tmp_path, snakemake, real_data_dir):
    config = reference_config()
    assert config["models"]["model_b"]["pretrained"] == "imagenet"
    configfile = REPO / "config" / "config.yaml"
    weights = "resources/weights/mobilenet_v2-b0353104.pth"

    def plan():
        result = snakemake(tmp_path, configfile, "-n", "--config", f"data_dir={real_data_dir}")
        return dry_run_jobs(result.stdout + result.stderr)

    jobs = plan()
    fetches = [j for j in jobs if j["rule"] == "fetch_weights"]
    assert [j["wildcards"] for j in fetches] == [{"weights_name": Path(weights).name}]
    train_jobs = [j for j in jobs if j["rule"] == "train"]
    per_model = {m: [j for j in train_jobs if j["wildcards"]["model"] == m] for m in ("model_a", "model_b")}
    assert len(per_model["model_b"]) == 90 and len(per_model["model_a"]) == 90
    assert all(weights in j["input"] for j in per_model["model_b"])
    assert not any(weights in j["input"] for j in per_model["model_a"])

    # With the file in place: nothing to fetch, and model B's jobs still depend on it.
    (tmp_path / weights).parent.mkdir(parents=True)
    (tmp_path / weights).write_bytes(b"placeholder: a dry run reads no file")
    jobs = plan()
    assert not [j for j in jobs if j["rule"] == "fetch_weights"]
    model_b = [j for j in jobs if j["rule"] == "train" and j["wildcards"]["model"] == "model_b"]
    assert len(model_b) == 90 and all(weights in j["input"] for j in model_b)


def small_config(tmp_path: Path, data: Path, model_b: dict) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "data_dir": str(data), "image_size": 32,
        "cv": {"folds": 2, "validation_fraction": 0.25},
        "training": {"max_epochs": 1, "threads": 1, "precision": "fp32"},
        "models": {"model_b": model_b},
        "augmentations": {"none": {}},
        "grid": {"model": ["model_b"], "batch_size": [8], "learning_rate": [0.001], "augmentation": ["none"]},
    })


def test_workflow_offline_stops_before_training_then_fetches_and_trains(tmp_path, snakemake, mobilenet_file):
    source, state = mobilenet_file
    work = tmp_path / "work"
    work.mkdir()
    data = write_image_folder(tmp_path / "data", n_classes=2, per_class=12, size=(32, 32))
    target = "results/train/model~model_b/batch_size~8/learning_rate~0.001/augmentation~none/repeat~0/fold~0/metrics.json"
    dest = work / "resources" / "weights" / source.name

    # Offline: the URL leads nowhere. The fetch fails with its message; no training starts.
    nowhere = (tmp_path / "offline" / source.name).as_uri()
    config = small_config(work, data, {"pretrained": "imagenet", "weights_url": nowhere})
    result = snakemake(work, config, "--cores", "1", "--keep-going", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot download the pretrained weights" in output and nowhere in output
    assert str(dest) in output and "models.model_b.weights_file" in output
    assert not (work / "results" / "train").exists() and not (work / "logs" / "results" / "train").exists()
    assert not dest.exists()

    # The same workflow with a reachable copy: fetched once (hash checked), then trained from it.
    config = small_config(work, data, {"pretrained": "imagenet", "weights_url": source.as_uri()})
    snakemake(work, config, "--cores", "1", target)
    assert dest.read_bytes() == source.read_bytes()
    metrics = json.loads((work / target).read_text())
    assert metrics["config"]["weights"] == f"resources/weights/{source.name}"


def test_a_configured_weights_file_is_used_and_a_missing_one_is_named(tmp_path, snakemake, mobilenet_file):
    data = write_image_folder(tmp_path / "data", n_classes=2, per_class=12, size=(32, 32))
    config = small_config(tmp_path, data, {"pretrained": "imagenet", "weights_file": str(mobilenet_file[0])})
    result = snakemake(tmp_path, config, "-n")
    jobs = dry_run_jobs(result.stdout + result.stderr)
    assert not [j for j in jobs if j["rule"] == "fetch_weights"]
    assert all(str(mobilenet_file[0]) in j["input"] for j in jobs if j["rule"] == "train")
    config = small_config(tmp_path, data, {"pretrained": "imagenet", "weights_file": "/nowhere/mobilenet.pth"})
    result = snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0 and "models.model_b.weights_file is /nowhere/mobilenet.pth" in result.stdout + result.stderr
