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
from cvgrid.metrics import better_word, get_metric, summary_columns
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


def best_point(summary: pd.DataFrame, model: str, *, metric: str) -> dict:
    """`model`'s best grid point by `metric` (statistics.metric: rank 1 in cv_summary.tsv, the
    point the summary and the statistics call best) and its CV estimate: the raw mean, which is
    optimistic because the point was chosen as the best of the model's grid on the same folds,
    the value corrected for that choice (Tibshirani & Tibshirani 2009; the one to expect), and
    the fold spread (mean +- 2 x std over the folds, ddof=0, clipped to the metric's range;
    not a confidence interval). With accuracy the published keys (mean_accuracy,
    corrected_accuracy, acc_std_x2, fold_accuracies); another metric gives its own
    (mean_<metric>, ...) and the point's mean accuracy beside them. ``metric`` names it.
    """
    best = best_points(summary)
    rows = best[best["model"] == model]
    if rows.empty:
        raise FinalError(f"the CV summary has no grid point of model {model!r} (models: {sorted(best['model'])})")
    row = rows.iloc[0]
    label = get_metric(metric).label
    mean_column, spread_column = summary_columns(metric)
    mean, spread = float(row[mean_column]), float(row[spread_column])
    # The candidates are the ranked points: a point a race (cv.race) stopped is unranked, its folds partial.
    candidates = summary[(summary["model"] == model) & summary["rank"].notna()]
    selected = selected_points(candidates, metric=metric).iloc[0]
    # Every axis of the grid (cvgrid.grid.AXES), as the Python type of its values.
    point = {axis: row[axis].item() if hasattr(row[axis], "item") else row[axis] for axis in axes_of(summary)}
    high = 1.0 if get_metric(metric).percent else math.inf
    estimate = {
        "metric": metric,
        f"corrected_{metric}": float(selected[f"corrected_{metric}"]),
        "corrected_definition": (f"mean CV {label} minus the optimism of choosing the best of "
                                 f"{int(selected['candidates'])} grid points on the same folds "
                                 f"(Tibshirani & Tibshirani 2009): the {label} to expect"),
        mean_column: mean,
        "selection_bias": float(selected["selection_bias"]),
        spread_column: spread,
        "interval": [max(0.0, mean - spread), min(high, mean + spread)],
        "interval_definition": (f"fold spread: mean {label} +- 2 x std over the CV test folds (ddof=0), "
                                f"clipped to [0, {'1' if high == 1.0 else 'inf'}]; not a confidence interval"),
        "folds": int(row["folds"]),
        ("fold_accuracies" if metric == "accuracy" else f"fold_{metric}"):
            {k: float(row[k]) for k in fold_columns(summary, metric) if pd.notna(row[k])},
    }
    if metric != "accuracy":
        estimate["mean_accuracy"] = float(row["mean_accuracy"])
    return {"grid_point": point, "cv_estimate": estimate}


def chosen_point(summary: pd.DataFrame, model: str, decision: pd.DataFrame | None = None, *, metric: str) -> dict:
    """The grid point of `model` that the final model is, by the config's ``final.choose``:
    without `decision` (choose: best, the default), :func:`best_point`; else decision.tsv's
    row of the model (cvgrid.analysis.decisions, written by the statistics step), with its CV
    estimate from cv_summary.tsv. Adds ``choice``: the rule, its cost, the gap to the best's
    mean, how many contenders and grid points it was chosen among. For a point chosen by
    another rule than best, ``corrected_accuracy`` is the conservative bound (the whole gap to
    each fold's best counted as optimism), not an estimate."""
    if decision is None or (decision["among"] == model).any() and \
            decision.loc[decision["among"] == model, "rule"].iloc[0] == "best":
        chosen = best_point(summary, model, metric=metric)
        chosen["choice"] = {"rule": "best", "cost": None, "gap_to_best": 0.0,
                            "definition": f"the highest mean CV {get_metric(metric).label} among the model's grid points"}
        return chosen
    rows = decision[decision["among"] == model]
    if rows.empty:
        raise FinalError(f"the decision table (decision.tsv) has no row for the model {model!r}")
    d = rows.iloc[0]
    keys = axes_of(summary)
    point_row = summary.merge(rows[keys].iloc[:1], on=keys, how="inner")
    if len(point_row) != 1:
        raise FinalError(f"the grid point that {d['rule']} chose for {model!r} in decision.tsv is not in the CV "
                         "summary: run the statistics step again")
    chosen = best_point(point_row.assign(rank=1), model, metric=metric)  # its figures, as the best point's are read
    mean = chosen["cv_estimate"]["mean_accuracy"]
    chosen["cv_estimate"].update({
        "corrected_accuracy": float(d["bound"]),
        "corrected_definition": ("a conservative (low) bound, not an estimate: the mean CV accuracy minus the mean over "
                                 "the folds of the best accuracy any of the model's "
                                 f"{int(d['candidates'])} grid points reached on that fold minus this point's (the "
                                 "whole gap to the best counted as optimism; the procedure's own estimate is "
                                 "choice.expected_accuracy, BBC-CV)"),
        "selection_bias": mean - float(d["bound"]),
    })
    chosen["choice"] = {"rule": str(d["rule"]), "cost": str(d["cost"]), "gap_to_best": float(d["gap"]),
                        "contenders": int(d["contenders"]), "candidates": int(d["candidates"]),
                        "definition": f"the contender of the lowest {d['cost']} (statistics.contender_probability; "
                                      "equal costs: the higher mean, then grid order)"}
    if pd.notna(d.get("bbc_estimate")):
        chosen["choice"]["expected_accuracy"] = {
            "estimate": float(d["bbc_estimate"]), "interval": [float(d["bbc_low"]), float(d["bbc_high"])],
            "bags": int(d["bbc_bags"]),
            "definition": ("BBC-CV (Tsamardinos et al. 2018): the rule applied to bootstrap samples of the pooled "
                           "out-of-fold predictions, its choice scored on the samples left out; 95% percentile "
                           "interval"),
        }
    return chosen


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
    metric = est["metric"]
    choice = info.get("choice", {"rule": "best"})
    if choice["rule"] == "best":
        chosen = "The best grid point"
        why = "this point was chosen for having the highest mean on those same folds"
    else:
        chosen = (f"The grid point chosen by the rule {choice['rule']} ({choice['definition']}; "
                  f"{100 * choice['gap_to_best']:+.2f} points from the best's mean, one of {choice['contenders']} "
                  f"contenders among {choice['candidates']} grid points"
                  + (f"; the accuracy to expect from this procedure: {choice['expected_accuracy']['estimate']:.4f}, "
                     f"95% interval {choice['expected_accuracy']['interval'][0]:.4f} to "
                     f"{choice['expected_accuracy']['interval'][1]:.4f}, BBC-CV"
                     if "expected_accuracy" in choice else "") + ")")
        why = "the bound counts the whole gap to each fold's best as optimism"
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
        "metric_label": get_metric(metric).label, "direction": better_word(metric),
        "corrected_accuracy": f"{est[f'corrected_{metric}']:.4f}",
        "corrected_definition": est["corrected_definition"], "folds": est["folds"],
        "mean_accuracy": f"{est[summary_columns(metric)[0]]:.4f}", "selection_bias": f"{est['selection_bias']:.4f}",
        "low": f"{lo:.4f}", "high": f"{hi:.4f}", "interval_definition": est["interval_definition"],
        "n_classes": len(info["class_names"]), "class_names": ", ".join(info["class_names"]),
        "input_size": info["input_size"], "preprocessing": info["preprocessing"],
        "check_text": check_text, "command": command, "model_dir": model_dir, "chosen": chosen, "why": why,
    }
    # Every value is escaped here; rows and files are HTML built from escaped values above.
    page = PAGE_TEMPLATE.substitute({k: e(str(v)) for k, v in values.items()}, rows=rows, files=files)
    with atomic_path(path) as tmp:
        tmp.write_text(page)


def refit(
    *,
    summary_path: Path,
    model_name: str,
    decision_path: Path | None = None,
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
    metric: str,
    gpus_requested: int,
    checkpoint_seconds: float,
    tensorboard: bool,
) -> dict:
    """Read the best grid point (by `metric`, statistics.metric), refit it on all images, write the final model's files.
    `config`: the config's `training`, `augmentations` and `models` (cvgrid.grid.point_settings
    fills in what the grid point does not set, as it did for the point's CV jobs)."""
    decision = None if decision_path is None else pd.read_csv(decision_path, sep="\t")
    chosen = chosen_point(pd.read_csv(summary_path, sep="\t"), model_name, decision, metric=metric)
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
                      checkpoint_seconds=checkpoint_seconds, tensorboard=tensorboard,
                      gpus_requested=gpus_requested) as job:
        images, index = job.images, job.index
        groups = None
        if groups_path is not None:
            groups = groups_for_index(index, pd.read_csv(groups_path, sep="\t", dtype=str), str(groups_path))
        split = refit_split(index["label"].to_numpy(), split_seed, validation_fraction, groups)
        out_dir = Path(out_dir)
        result = job.fit(settings, split, checkpoint_path, out_dir)

        spec = get_spec(settings.builder)
        normalization = (None if weights_path is None
                         else {"mean": list(spec.pretrained.mean), "std": list(spec.pretrained.std)})
        model = result.model.to("cpu").float().eval()
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

