"""Predict classes of image files with a final model (results/final/{model}/, cvgrid.model_folder).

Images are read like the prepare step reads the data set (cvgrid.data.load_image: any size
and PIL mode, to RGB, resized to the model's image_size), scaled to [0, 1] and resized to the
model's input size exactly as the training jobs do on the device (bilinear; antialiased when
shrinking). A file that cannot be read is reported, and the others are still predicted.

Backends: onnxruntime with model.onnx, or PyTorch with model.pt. Nothing here imports torch
unless the PyTorch backend is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cvgrid.data import load_image
from cvgrid.model_folder import ModelFolderError

# What a folder argument contributes (case-insensitive); files named explicitly are always tried.
FOLDER_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# What decoding may raise for a bad file; anything else is a bug and stops the command.
READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def preprocess_array(image: np.ndarray, input_size: int) -> np.ndarray:
    """uint8 (H, W, 3) as stored by the prepare step -> float32 (3, input_size, input_size) in [0, 1].

    The resize matches cvgrid.training.BatchTransform (torch bilinear, align_corners=False,
    antialias when shrinking), done per channel on float pixels with PIL's bilinear filter.
    """
    x = image.astype(np.float32) / np.float32(255.0)
    if x.shape[0] != input_size or x.shape[1] != input_size:
        x = np.stack(
            [
                np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize(
                    (input_size, input_size), Image.Resampling.BILINEAR), dtype=np.float32)
                for c in range(x.shape[2])
            ],
            axis=-1,
        )
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(path: str | Path, image_size: int, input_size: int) -> np.ndarray:
    """One image file -> the model's float32 input (3, input_size, input_size)."""
    return preprocess_array(load_image(path, image_size), input_size)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


class OnnxBackend:
    name = "onnx"

    def __init__(self, onnx_path: str | Path):
        import onnxruntime as ort  # ImportError: the caller decides whether to fall back

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class TorchBackend:
    name = "torch"

    def __init__(self, module, device: str = "cpu"):
        self.module, self.device = module, device

    @classmethod
    def from_module(cls, module, device: str = "cpu") -> "TorchBackend":
        import torch

        return cls(module.to(device, dtype=torch.float32).eval(), device)

    @classmethod
    def from_dir(cls, model_dir: Path, info: dict, device: str = "cpu") -> "TorchBackend":
        import torch

        from cvgrid.models import build_model

        # A pretrained model carries its input normalisation (cvgrid.final); older folders lack the key.
        normalized = info.get("input_normalization") is not None
        # Folders written before model variants lack "architecture" (it was the model's name) and
        # their "model_options" was the config entry, not the builder's options.
        options = info.get("model_options") if "architecture" in info else None
        module = build_model(info.get("architecture", info["model"]), len(info["class_names"]),
                             normalize_input=normalized, options=options)
        state = torch.load(Path(model_dir) / info["files"]["weights"], map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        return cls.from_module(module, device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.module(x).float().cpu().numpy()


def open_backend(model_dir: str | Path, info: dict, backend: str = "auto", device: str = "cpu"):
    """"onnx", "torch", or "auto": onnxruntime if it is installed and model.onnx exists, else torch.
    Returns (backend, note): note says why "auto" did not pick onnx, else None."""
    model_dir = Path(model_dir)
    onnx_path = model_dir / info["files"].get("onnx", "model.onnx")
    if backend in ("auto", "onnx"):
        if not onnx_path.exists():
            if backend == "onnx":
                raise ModelFolderError(f"{onnx_path} does not exist")
            return TorchBackend.from_dir(model_dir, info, device), f"no {onnx_path}, using PyTorch"
        try:
            return OnnxBackend(onnx_path), None
        except ImportError as error:
            if backend == "onnx":
                raise ModelFolderError(f"--backend onnx needs onnxruntime: {error}") from error
            return TorchBackend.from_dir(model_dir, info, device), "onnxruntime is not installed, using PyTorch"
    if backend == "torch":
        return TorchBackend.from_dir(model_dir, info, device), None
    raise ModelFolderError(f"unknown backend {backend!r} (auto, onnx, torch)")


def list_inputs(paths) -> list[Path]:
    """Files as given, in order; a folder contributes its image files (recursively, sorted).
    A path that does not exist is kept, so that it is reported like an unreadable file."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES and not p.name.startswith(".")
            )
        else:
            found.append(path)
    return found


@dataclass
class Prediction:
    file: str
    predicted_class: str
    probability: float
    probabilities: np.ndarray  # every class, in class_names order


def predict_files(files, backend, info: dict, batch_size: int = 64):
    """Predict every readable file. Returns (predictions in input order, failures as (file, error))."""
    names = info["class_names"]
    predictions: list[Prediction] = []
    failures: list[tuple[str, str]] = []
    pending: list[tuple[str, np.ndarray]] = []

    def flush():
        if not pending:
            return
        probs = softmax(backend.logits(np.stack([x for _, x in pending])))
        for (name, _), p in zip(pending, probs):
            k = int(p.argmax())
            predictions.append(Prediction(name, names[k], float(p[k]), p))
        pending.clear()

    for path in files:
        try:
            pending.append((str(path), preprocess(path, info["image_size"], info["input_size"])))
        except READ_ERRORS as error:
            failures.append((str(path), f"{type(error).__name__}: {error}"))
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return predictions, failures


def format_lines(predictions, fmt: str = "tsv", header: bool = False) -> list[str]:
    """TSV lines (file, predicted_class, probability) or JSON lines with the same keys."""
    if fmt == "json":
        return [json.dumps({"file": p.file, "predicted_class": p.predicted_class,
                            "probability": round(p.probability, 6)}) for p in predictions]
    if fmt != "tsv":
        raise ValueError(f"unknown format {fmt!r}")
    lines = ["file\tpredicted_class\tprobability"] if header else []
    return lines + [f"{p.file}\t{p.predicted_class}\t{p.probability:.6f}" for p in predictions]


__all__ = ["ModelFolderError", "preprocess", "preprocess_array", "softmax", "OnnxBackend",
           "TorchBackend", "open_backend", "list_inputs", "predict_files", "format_lines"]
