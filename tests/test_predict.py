"""scripts/predict.py and cvgrid.predict on the final model of a real workflow run
(tests/test_final.py's `final_run`): one line per image, unreadable files named while the
others are predicted, ONNX and PyTorch in agreement, preprocessing equal to training's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import REPO, need
from cvgrid.model_folder import read_info
from cvgrid.predict import OnnxBackend, TorchBackend, list_inputs, open_backend, predict_files, preprocess_array
from cvgrid.training import BatchTransform
from test_final import final_run  # noqa: F401 - the session fixture: one workflow run for both files

PREDICT = REPO / "scripts" / "predict.py"
EXAMPLES = Path(os.environ.get(
    "CVGRID_REAL_EXAMPLES", REPO.parent / "shared" / "datasets" / "sign-language-digits-examples"))


def predict_cli(*args):
    return subprocess.run([sys.executable, str(PREDICT), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def odd_images(folder: Path) -> list[Path]:
    """Images in modes and sizes the data set does not have: grey, RGBA, palette, 16-bit, large."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)
    made = {
        "grey.png": Image.fromarray(rgb[..., 0], "L"),
        "rgba.png": Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (90, 60), dtype=np.uint8)]), "RGBA"),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "sixteen.png": Image.fromarray(rng.integers(0, 65536, (50, 50), dtype=np.uint16)),
        "large.jpg": Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)),
    }
    for name, image in made.items():
        image.save(folder / name)
    return [folder / name for name in made]


@pytest.mark.parametrize("stored, input_size", [(32, 100), (100, 128), (150, 100), (100, 100)])
def test_preprocessing_equals_the_training_transform(stored, input_size):
    image = np.random.default_rng(stored).integers(0, 256, (stored, stored, 3), dtype=np.uint8)
    settings = type("S", (), {"rotation_degrees": 0, "shift_fraction": 0, "zoom_fraction": 0})()
    expected = BatchTransform(input_size, settings)(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    got = preprocess_array(image, input_size)
    assert got.shape == (3, input_size, input_size) and got.dtype == np.float32
    assert np.abs(got - expected.numpy()).max() < 1e-5


def test_onnx_and_torch_agree_on_every_image_of_a_test_fold(final_run, tmp_path):
    info = read_info(final_run.model_dir)
    index = pd.read_csv(final_run.work / "results" / "data" / "index.tsv", sep="\t")
    folds = pd.read_csv(final_run.work / "results" / "data" / "folds.tsv", sep="\t")
    test = folds[(folds["repeat"] == 0) & (folds["fold"] == 0) & (folds["role"] == "test")]["sample"]
    files = [final_run.data / f for f in index.set_index("sample").loc[test, "file"]] + odd_images(tmp_path)
    results = {}
    for backend in (OnnxBackend(final_run.model_dir / "model.onnx"), TorchBackend.from_dir(final_run.model_dir, info)):
        predictions, failures = predict_files(files, backend, info, batch_size=4)
        assert failures == []
        results[backend.name] = predictions
    onnx, torch_ = results["onnx"], results["torch"]
    assert len(onnx) == len(torch_) == len(files) == len(test) + 5
    assert [p.predicted_class for p in onnx] == [p.predicted_class for p in torch_]
    assert np.abs(np.stack([p.probabilities for p in onnx]) - np.stack([p.probabilities for p in torch_])).max() < 1e-4
    # Reading the files gives what the training pipeline gives on the prepared images.
    images = np.load(final_run.work / "results" / "data" / "images.npy")[test.to_numpy()]
    settings = type("S", (), {"rotation_degrees": 0, "shift_fraction": 0, "zoom_fraction": 0})()
    batch = BatchTransform(info["input_size"], settings)(torch.from_numpy(images).permute(0, 3, 1, 2))
    model = TorchBackend.from_dir(final_run.model_dir, info).module
    with torch.inference_mode():
        expected = torch.softmax(model(batch), 1).numpy()
    assert np.abs(np.stack([p.probabilities for p in torch_[: len(test)]]) - expected).max() < 1e-5


def test_cli_prints_one_tsv_line_per_image_of_a_folder(final_run, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(final_run.data, folder)  # class folders: the folder is searched recursively
    (folder / "notes.txt").write_text("not an image, ignored in a folder\n")
    result = predict_cli("--model-dir", final_run.model_dir, folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 60  # 3 classes x 20 images
    classes = read_info(final_run.model_dir)["class_names"]
    for line in lines:
        file, predicted, probability = line.split("\t")
        assert Path(file).is_file() and predicted in classes and 0 < float(probability) <= 1


def test_cli_json_lines_header_and_torch_backend(final_run):
    image = final_run.data / "class_1" / "img_000.jpg"
    as_json = predict_cli("--model-dir", final_run.model_dir, "--format", "json", image, image)
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(rows) == 2 and set(rows[0]) == {"file", "predicted_class", "probability"}
    with_torch = predict_cli("--model-dir", final_run.model_dir, "--backend", "torch", "--header", image)
    header, line = with_torch.stdout.splitlines()
    assert header == "file\tpredicted_class\tprobability"
    assert line.split("\t")[1] == rows[0]["predicted_class"]
    assert abs(float(line.split("\t")[2]) - rows[0]["probability"]) < 1e-4


def test_an_unreadable_file_is_named_and_the_others_are_predicted(final_run, tmp_path):
    folder = tmp_path / "mixed"
    good = odd_images(folder)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    truncated = (final_run.data / "class_0" / "img_001.jpg").read_bytes()
    (folder / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + truncated[:40])
    missing = tmp_path / "no_such_file.jpg"
    result = predict_cli("--model-dir", final_run.model_dir, folder, missing)
    assert result.returncode == 1
    predicted = [Path(line.split("\t")[0]).name for line in result.stdout.splitlines()]
    assert sorted(predicted) == sorted(p.name for p in good)
    for bad in ("corrupt.jpg", "truncated.png", "no_such_file.jpg"):
        assert bad in result.stderr
    assert "3 of 8 file(s) could not be read" in result.stderr


def test_auto_backend_falls_back_to_torch_without_the_onnx_file(final_run, tmp_path):
    copy = tmp_path / "final"
    shutil.copytree(final_run.model_dir, copy)
    (copy / "model.onnx").unlink()
    backend, note = open_backend(copy, read_info(copy), "auto")
    assert backend.name == "torch" and "model.onnx" in note
    backend, note = open_backend(final_run.model_dir, read_info(final_run.model_dir), "auto")
    assert backend.name == "onnx" and note is None


def test_a_folder_that_is_not_a_final_model_is_refused(tmp_path):
    result = predict_cli("--model-dir", tmp_path, tmp_path)
    assert result.returncode == 2 and "model.json" in result.stderr


def test_the_ten_example_photos_give_ten_lines(final_run):
    need(EXAMPLES.is_dir() and len(list(EXAMPLES.glob("example_*.JPG"))) == 10,
         f"the ten Sign Language Digits example photos are not at {EXAMPLES} (set CVGRID_REAL_EXAMPLES)")
    result = predict_cli("--model-dir", final_run.model_dir, EXAMPLES)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 10
    assert sorted(Path(line.split("\t")[0]).name for line in lines) == [f"example_{d}.JPG" for d in range(10)]
    assert list_inputs([EXAMPLES]) == sorted(EXAMPLES.glob("example_*.JPG"))


def test_a_pretrained_models_normalisation_travels_in_model_onnx_and_model_pt(tmp_path):
    """A model that starts from ImageNet weights normalises its input inside itself: model.onnx
    computes what PyTorch does, and predict rebuilds the normalising model from model.json to
    load model.pt."""
    from cvgrid.final import check_onnx, export_onnx, save_weights
    from cvgrid.layers import NormalizedInput
    from cvgrid.models import build_model, get_spec
    from cvgrid.weights import IMAGENET_MEAN, IMAGENET_STD

    # Model A's output follows its input closely (a randomly initialised MobileNetV2's hardly does).
    torch.manual_seed(0)
    model = NormalizedInput(build_model("model_a", 3), IMAGENET_MEAN, IMAGENET_STD).eval()
    batch = np.random.default_rng(0).random((4, 3, 100, 100), dtype=np.float32)
    export_onnx(model, 100, tmp_path / "a.onnx")
    onnx_logits = OnnxBackend(tmp_path / "a.onnx").logits(batch)
    with torch.inference_mode():
        x = torch.from_numpy(batch)
        normalised = model.model((x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
                                 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)).numpy()
        unnormalised = model.model(x).numpy()
    assert np.abs(onnx_logits - normalised).max() < 1e-4
    assert np.abs(onnx_logits - unnormalised).max() > 1e-2  # the normalisation is in the file

    model = build_model("model_b", 3, normalize_input=True).eval()
    size = get_spec("model_b").input_size
    batch = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    export_onnx(model, size, tmp_path / "model.onnx")
    assert check_onnx(model, tmp_path / "model.onnx", batch)["checked"]
    save_weights(model, tmp_path / "model.pt")
    info = {"model": "model_b", "class_names": ["a", "b", "c"], "files": {"weights": "model.pt"},
            "input_normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    rebuilt = TorchBackend.from_dir(tmp_path, info)  # load_state_dict is strict: the keys fit
    assert isinstance(rebuilt.module, NormalizedInput)
    assert np.abs(rebuilt.logits(batch) - OnnxBackend(tmp_path / "model.onnx").logits(batch)).max() < 1e-4
