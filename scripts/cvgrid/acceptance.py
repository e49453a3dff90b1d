"""What the GPU acceptance run (scripts/gpu_acceptance.py) needs besides the scripts it calls:
the config as the workflow reads it without Snakemake, and the JSON it writes, summarised."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


def fill_defaults(data: dict, schema: dict) -> dict:
    """The schema's `default:`s filled into `data` where a key is missing, nested objects too
    (what snakemake.utils.validate(set_default=True) does), without validating."""
    for key, rules in (schema.get("properties") or {}).items():
        if key not in data and "default" in rules:
            data[key] = copy.deepcopy(rules["default"])
        if isinstance(data.get(key), dict) and "properties" in rules:
            fill_defaults(data[key], rules)
    return data


def read_config(path: Path, schema_path: Path) -> dict:
    """A workflow config with the schema's defaults, validated by Snakemake where it is
    installed; elsewhere (a bare GPU machine) only the defaults are filled, and that is logged."""
    config = yaml.safe_load(Path(path).read_text())
    try:
        from snakemake.utils import validate
    except ImportError:
        log.warning("snakemake is not installed: %s gets the schema's defaults without validation", path)
        return fill_defaults(config, yaml.safe_load(Path(schema_path).read_text()))
    validate(config, str(schema_path))
    return config


def torch_version_ok(version: str, minimum: tuple[int, int] = (2, 11)) -> bool:
    """'2.11.0+cu128' >= 2.11."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return bool(match) and (int(match[1]), int(match[2])) >= minimum


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (a file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def fold_summary(metrics: list[dict], wall_seconds: float) -> dict:
    """Five folds of one grid point, trained by one train.py: accuracy, speed and time."""
    rates = [m["images_per_second"] for m in metrics if m.get("images_per_second")]
    return {
        "precision": sorted({m["precision"] for m in metrics}),
        "tf32": sorted({m.get("tf32") for m in metrics if "tf32" in m}),
        "folds": len(metrics),
        "accuracy_per_fold": [m["accuracy"] for m in metrics],
        "mean_accuracy": sum(m["accuracy"] for m in metrics) / len(metrics),
        "epochs_per_fold": [m["epochs_run"] for m in metrics],
        "seconds_per_fold": [m["seconds"] for m in metrics],
        "images_per_second_per_fold": rates,
        "mean_images_per_second": sum(rates) / len(rates) if rates else None,
        "wall_seconds": round(wall_seconds, 1),
    }


def parallel_summary(metrics: list[dict], wall_seconds: float, predictions: list[str], one_at_a_time: dict) -> dict:
    """The folds trained by one train.py --parallel-folds N: its wall time (the process's, its
    start-up included), the speed-up over the run one at a time (`one_at_a_time`: its seconds
    and predictions.tsv texts, in the same fold order), how many folds it trained at once
    (metrics.json's parallel_folds: 1 on the CPU), and how many folds' predictions are exactly
    those of one at a time (a GPU's autotuned kernels may differ in the last bits)."""
    same = sum(mine == theirs for mine, theirs in zip(predictions, one_at_a_time["predictions"], strict=True))
    images = sum(m["n_train"] * m["epochs_run"] for m in metrics)
    peaks = [m["peak_gpu_memory_mb"] for m in metrics if m.get("peak_gpu_memory_mb") is not None]
    return {
        "parallel_folds_used": sorted({m.get("parallel_folds", 1) for m in metrics}),
        "folds": len(metrics),
        "wall_seconds": round(wall_seconds, 1),
        "seconds_per_fold": round(wall_seconds / len(metrics), 2),
        "images_per_second_together": round(images / wall_seconds, 1),
        "speed_up": round(one_at_a_time["seconds"] / wall_seconds, 2),
        "accuracy_per_fold": [m["accuracy"] for m in metrics],
        "same_predictions_as_one_at_a_time": same,
        "peak_gpu_memory_mb": max(peaks) if peaks else None,  # None on the CPU
    }
