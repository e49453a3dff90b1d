"""The final-model folder, results/final/{model}/: what is in it and how to read it.

Written by cvgrid.final (the refit), read by cvgrid.predict and scripts/predict.py:

    model.pt           state_dict (torch.load(..., weights_only=True))
    model.onnx         the same network for onnxruntime; input "image": float32
                       (N, 3, input_size, input_size) RGB in [0, 1], output "logits": (N, classes)
    model.json         configuration, grid point, class names, sizes, CV estimate, checks
    history.tsv        the refit's learning curve
    final_model.html   the report page: what it is and how to call scripts/predict.py

Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT_VERSION = 1
ONNX_INPUT, ONNX_OUTPUT = "image", "logits"
# model.json "files": which file holds what, relative to the folder.
FILES = {"weights": "model.pt", "onnx": "model.onnx", "history": "history.tsv"}
# What model.json must have for predict to use the folder.
REQUIRED_KEYS = ("model", "class_names", "input_size", "image_size", "files")


class ModelFolderError(ValueError):
    """A final-model folder that cannot be used; the message names the file."""


def read_info(model_dir: str | Path) -> dict:
    """model.json of a final-model folder, with a named error if it is missing or broken."""
    path = Path(model_dir) / "model.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelFolderError(
            f"cannot read {path}: {error} (is {model_dir} a results/final/MODEL folder?)"
        ) from error
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise ModelFolderError(f"{path} lacks {missing}")
    return info
