"""The winner: refit each model's best grid point on all images and export it.

Same protocol as a CV training job (cvgrid.training.fit): early stopping on a seeded,
stratified (grouped, with cv.groups) validation split, best weights restored; only there is
no test fold, because every image is used. What the folder results/final/{model}/ holds is
cvgrid.model_folder's.

Preprocessing (cvgrid.predict.preprocess) is the training pipeline's: decode to RGB like the
prepare step (EXIF upright, transparency on white, 16-bit scaled), resize to image_size
(bilinear), divide by 255, resize to the model's input size if that differs (bilinear).
No mean/std normalisation.
"""

from __future__ import annotations

import copy
import html
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
import torch

from cvgrid import hardware
from cvgrid.folds import groups_for_index, refit_split
from cvgrid.grid import AUGMENTATION_KEYS, ConfigError, axes_of, point_settings
from cvgrid.io import atomic_path, write_json, write_tsv
from cvgrid.job import training_job
from cvgrid.model_folder import FILES, FORMAT_VERSION, ONNX_INPUT, ONNX_OUTPUT
from cvgrid.models import get_spec
from cvgrid.predict import OnnxBackend, TorchBackend, preprocess_array, softmax
from cvgrid.summary import best_points, fold_columns, selected_points
from cvgrid.training import settings_from_json

log = logging.getLogger(__name__)

# The final model's page (write_page): HTML with $placeholders, beside this module.
PAGE_TEMPLATE = Template((Path(__file__).with_name("final_model.html")).read_text())

ONNX_TOLERANCE = 1e-4  # largest allowed |p_onnx - p_torch| of any class probability
CHECK_IMAGES = 64  # images of the data set the export is checked on
# TrainSettings needs a repeat and a fold; a refit on all data has neither.
ALL_DATA = -1


class FinalError(ValueError):
    """The CV summary or the refit's inputs cannot give a final model; the message says why."""


def best_point(summary: pd.DataFrame, model: str) -> dict:
    """`model`'s best grid point (rank 1 in cv_summary.tsv, the point the summary and the
    statistics call best) and its CV estimate: the raw mean, which is optimistic because the
    point was chosen as the best of the model's grid on the same folds, the accuracy corrected
    for that choice (Tibshirani & Tibshirani 2009; the one to expect), and the fold spread
    (mean +- 2 x std over the folds, ddof=0, clipped to [0, 1]; not a confidence interval).
    """
    best = best_points(summary)
    rows = best[best["model"] == model]
    if rows.empty:
        raise FinalError(f"the CV summary has no grid point of model {model!r} (models: {sorted(best['model'])})")
    row = rows.iloc[0]
    mean, spread = float(row["mean_accuracy"]), float(row["acc_std_x2"])
    selected = selected_points(summary[summary["model"] == model]).iloc[0]
    # Every axis of the grid (cvgrid.grid.AXES), as the Python type of its values.
    point = {axis: row[axis].item() if hasattr(row[axis], "item") else row[axis] for axis in axes_of(summary)}
    estimate = {
        "corrected_accuracy": float(selected["corrected_accuracy"]),
        "corrected_definition": (f"mean CV accuracy minus the optimism of choosing the best of "
                                 f"{int(selected['candidates'])} grid points on the same folds "
                                 "(Tibshirani & Tibshirani 2009): the accuracy to expect"),
        "mean_accuracy": mean,
        "selection_bias": float(selected["selection_bias"]),
        "acc_std_x2": spread,
        "interval": [max(0.0, mean - spread), min(1.0, mean + spread)],
        "interval_definition": "fold spread: mean accuracy +- 2 x std over the CV test folds (ddof=0), "
                               "clipped to [0, 1]; not a confidence interval",
        "folds": int(row["folds"]),
        "fold_accuracies": {k: float(row[k]) for k in fold_columns(summary) if pd.notna(row[k])},
    }
    return {"grid_point": point, "cv_estimate": estimate}


def export_onnx(model, input_size: int, path: Path) -> dict:
    """Export `model` (a CPU float32 copy, eval mode) to ONNX with a dynamic batch size."""
    net = copy.deepcopy(model).to("cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
    example = torch.rand(2, 3, input_size, input_size)
    # Written beside `path` and renamed onto it: a killed export leaves no model.onnx behind.
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.onnx")  # the exporter wants the suffix
    try:
        torch.onnx.export(
            net, (example,), str(tmp), dynamo=True, external_data=False, optimize=True,
            input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    info = {"file": path.name, "input": ONNX_INPUT, "output": ONNX_OUTPUT,
            "input_shape": ["batch", 3, input_size, input_size], "torch_exporter": "dynamo"}
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        info["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    except ImportError:
        pass
    return info


def check_onnx(model, onnx_path: Path, batch: np.ndarray) -> dict:
    """Class probabilities of PyTorch and onnxruntime on `batch` (float32 NCHW in [0, 1]).

    Raises FinalError when they disagree on a class or by more than ONNX_TOLERANCE; without
    onnxruntime the check is skipped and says so.
    """
    try:
        onnx_backend = OnnxBackend(onnx_path)
    except ImportError as error:
        log.warning("onnxruntime is not installed, the ONNX export is not checked: %s", error)
        return {"checked": False, "reason": "onnxruntime not installed"}
    torch_probs = softmax(TorchBackend.from_module(model).logits(batch))
    onnx_probs = softmax(onnx_backend.logits(batch))
    difference = float(np.abs(torch_probs - onnx_probs).max())
    same = bool((torch_probs.argmax(1) == onnx_probs.argmax(1)).all())
    result = {"checked": True, "images": int(len(batch)), "same_class": same,
              "max_abs_probability_difference": difference, "tolerance": ONNX_TOLERANCE}
    if not same or difference > ONNX_TOLERANCE:
        raise FinalError(f"the ONNX export disagrees with PyTorch: {result}")
    return result


def save_weights(model, path: Path) -> None:
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def predict_command(model_dir: str) -> str:
    return f"python scripts/predict.py --model-dir {model_dir} IMAGE_OR_FOLDER [...]"


def write_page(info: dict, model_dir: str, path: Path) -> None:
    """The report's "final model" page: configuration, CV estimate, files, how to predict."""
    e = html.escape
    point, est, refit = info["grid_point"], info["cv_estimate"], info["refit"]
    lo, hi = est["interval"]
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in point.items())
    policy = ", ".join(f"{k}={v}" for k, v in info["augmentation_policy"].items()) or "no augmentation"
    files = "".join(
        f"<tr><th>{e(what)}</th><td><code>{e(model_dir)}/{e(name)}</code></td></tr>"
        for what, name in (("weights (state_dict)", "model.pt"), ("ONNX", "model.onnx"),
                           ("configuration", "model.json"), ("refit learning curve", "history.tsv"))
    )
    check = info["onnx"].get("check", {})
    check_text = (
        f"ONNX and PyTorch agree on {check['images']} images of the data set (largest probability "
        f"difference {check['max_abs_probability_difference']:.1e})." if check.get("checked")
        else "The ONNX export was not checked (onnxruntime missing)."
    )
    command = predict_command(model_dir)
    values = {
        "model": point["model"], "images": info["data"]["images"], "n_train": refit["n_train"],
        "n_validation": refit["n_validation"], "best_epoch": refit["best_epoch"],
        "epochs_run": refit["epochs_run"], "best_val_accuracy": f"{refit['best_val_accuracy']:.3f}",
        "policy": policy, "max_epochs": refit["max_epochs"], "patience": refit["patience"],
        "seed": refit["seed"], "precision": refit["precision"],
        "corrected_accuracy": f"{est['corrected_accuracy']:.4f}",
        "corrected_definition": est["corrected_definition"], "folds": est["folds"],
        "mean_accuracy": f"{est['mean_accuracy']:.4f}", "selection_bias": f"{est['selection_bias']:.4f}",
        "low": f"{lo:.4f}", "high": f"{hi:.4f}", "interval_definition": est["interval_definition"],
        "n_classes": len(info["class_names"]), "class_names": ", ".join(info["class_names"]),
        "input_size": info["input_size"], "preprocessing": info["preprocessing"],
        "check_text": check_text, "command": command, "model_dir": model_dir,
    }
    # Every value is escaped here; rows and files are HTML built from escaped values above.
    page = PAGE_TEMPLATE.substitute({k: e(str(v)) for k, v in values.items()}, rows=rows, files=files)
    with atomic_path(path) as tmp:
        tmp.write_text(page)


def refit(
    *,
    summary_path: Path,
    model_name: str,
    images_path: Path,
    index_path: Path,
    out_dir: Path,
    config: dict,
    split_seed: int,
    validation_fraction: float,
    groups_path: Path | None,
    weights_path: Path | None,
    checkpoint_path: Path | None,
    device: str,
    threads: int,
    gpus_requested: int = 0,
    checkpoint_seconds: float = 0.0,
) -> dict:
    """Read the best grid point, refit it on all images, write the final model's files.
    `config`: the config's `training`, `augmentations` and `models` (cvgrid.grid.point_settings
    fills in what the grid point does not set, as it did for the point's CV jobs)."""
    chosen = best_point(pd.read_csv(summary_path, sep="\t"), model_name)
    point = chosen["grid_point"]
    training = config["training"]
    try:
        values = point_settings(config, point)
    except ConfigError as error:
        raise FinalError(f"the best grid point of {model_name}: {error}") from None
    # Pretrained backbone, as the CV jobs of this model had it.
    settings = settings_from_json(values, repeat=ALL_DATA, fold=ALL_DATA,
                                  weights=None if weights_path is None else str(weights_path))
    policy = {key: values[key] for key in AUGMENTATION_KEYS}
    with training_job(images_path=images_path, index_path=index_path, precision=training["precision"],
                      device=device, threads=threads,
                      checkpoint_seconds=checkpoint_seconds,
                      gpus_requested=gpus_requested) as job:
        images, index = job.images, job.index
        groups = None
        if groups_path is not None:
            groups = groups_for_index(index, pd.read_csv(groups_path, sep="\t", dtype=str), str(groups_path))
        split = refit_split(index["label"].to_numpy(), split_seed, validation_fraction, groups)
        result = job.fit(settings, split, checkpoint_path)

        spec = get_spec(settings.builder)
        normalization = (None if weights_path is None
                         else {"mean": list(spec.pretrained.mean), "std": list(spec.pretrained.std)})
        model = result.model.to("cpu").float().eval()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(model, out_dir / "model.pt")
        onnx_info = export_onnx(model, spec.input_size, out_dir / "model.onnx")
        check_idx = split["validation"][:CHECK_IMAGES]
        batch = np.stack([preprocess_array(images[i], spec.input_size) for i in check_idx])
        onnx_info["check"] = check_onnx(model, out_dir / "model.onnx", batch)

        info = {
            "format_version": FORMAT_VERSION,
            "model": model_name,
            "description": spec.description,
            **chosen,
            "augmentation_policy": policy,
            # What builds the network (predict rebuilds it from these): the registry entry and
            # its options that differ from their defaults.
            "architecture": settings.builder,
            "model_options": settings.build_options(),
            "class_names": job.class_names,
            "num_classes": len(job.class_names),
            "input_size": spec.input_size,
            "image_size": int(images.shape[1]),
            "preprocessing": (
                f"Decode to RGB like the prepare step (cvgrid.data.load_image: EXIF upright, transparency on "
                f"white, 16-bit scaled), resize to image_size {int(images.shape[1])} (bilinear), divide by 255, "
                f"resize to the input size {spec.input_size} if it differs (bilinear). "
                + ("The mean/std normalisation of the pretrained weights is part of the model (input_normalization)."
                   if normalization else "No mean/std normalisation.")
            ),
            # Inside the model (model.pt and model.onnx): a pretrained model's inputs are normalised
            # as its ImageNet weights expect; None: it takes [0, 1] as it is.
            "input_normalization": normalization,
            "refit": {
                **{k: v for k, v in asdict(settings).items() if k not in ("repeat", "fold")},
                "precision_requested": job.precision_requested,
                "precision": job.precision,
                "split": ("all images; early-stopping split = first part of a stratified"
                          f"{' grouped' if groups is not None else ''} split into round(1/validation_fraction) "
                          "parts seeded from SeedSequence([seed]) (cvgrid.folds.refit_split)"),
                "split_seed": split_seed,
                "validation_fraction": validation_fraction,
                "groups": str(groups_path) if groups_path else None,
                "n_train": len(split["train"]),
                "n_validation": len(split["validation"]),
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "best_val_accuracy": float(result.history["val_accuracy"].max()),
                "seconds": round(result.seconds, 3),
                **hardware.describe(job.device),
            },
            "files": FILES,
            "onnx": onnx_info,
            "data": {"images": int(len(index)), "images_file": str(images_path), "index_file": str(index_path),
                     "summary_file": str(summary_path)},
            "versions": _versions(),
        }
        write_tsv(result.history, out_dir / "history.tsv")
        write_page(info, str(out_dir), out_dir / "final_model.html")
        write_json(_finite(info), out_dir / "model.json")
    return info


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "torchvision", "onnx", "onnxruntime", "onnxscript"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _finite(value):
    """NaN/inf -> None, so that model.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

