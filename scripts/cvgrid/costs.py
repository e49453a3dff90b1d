"""What each grid point costs, in units that mean the same on every machine, and the measured
seconds beside them.

Per grid point:

* ``work``: training work, epochs run x images fitted on (metrics.json's ``epochs_run`` x
  ``n_train``), mean over the point's (repeat, fold) jobs: what one more fit of the point costs,
  on any hardware, up to the cost of one image's step.
* ``parameters``: all parameters of the model (trainable or not).
* ``macs``: multiply-accumulates of one forward pass of one image at the model's input size
  (its registry entry's ``input_size``), counted by torch's own flop counter
  (``torch.utils.flop_counter.FlopCounterMode``), which counts a multiply-accumulate as 2 flops
  in the matrix products and convolutions only: ``macs`` = its flops / 2, and element-wise
  layers (activations, batch norm, pooling) are not in it.
* ``seconds``: measured training seconds (metrics.json ``seconds``), mean over the jobs. They
  depend on the machine, its load and its threads (on the study the same work took 4 to 22
  minutes), so they are never the default cost.

torch is imported inside :func:`model_size` only: the workflow's planning imports the
registry, and a dry run must not pay for torch (tests/test_structure.py).
"""

from __future__ import annotations

import functools

import pandas as pd

from cvgrid.grid import architecture, axes_of, model_options
from cvgrid.models import build_model, get_spec

COSTS = ("work", "parameters", "macs", "seconds")


class CostError(ValueError):
    pass


def training_costs(folds: pd.DataFrame, keys=None) -> pd.DataFrame:
    """``work`` (mean over the point's jobs of epochs_run x n_train), ``seconds`` (mean measured
    training seconds; NaN where a job did not record them) and ``jobs``, one row per grid point,
    from the fold table (cv_folds.tsv: cvgrid.summary.fold_table). Rows in grid-key order."""
    keys = axes_of(folds) if keys is None else list(keys)
    missing = [c for c in ("epochs_run", "n_train", "seconds") if c not in folds.columns]
    if missing:
        raise CostError(f"the fold table lacks the column(s) {missing} that the training costs need")
    table = folds.assign(work=folds["epochs_run"] * folds["n_train"])
    # seconds: a job from before the field existed has none; mean of those that have, NaN if none.
    grouped = table.groupby(keys, sort=True)
    return pd.DataFrame({
        "work": grouped["work"].mean(),
        "seconds": grouped["seconds"].mean(),
        "jobs": grouped.size(),
    }).reset_index()


@functools.lru_cache(maxsize=None)
def model_size(arch: str, options: tuple[tuple[str, object], ...], input_size: int, num_classes: int) -> dict:
    """``parameters`` and ``macs`` (per image, one forward pass at `input_size`) of the registered
    model `arch` built with `options` (sorted (name, value) pairs, hashable for the cache: a grid
    builds each model once) for `num_classes` classes, with random weights."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch, num_classes, options=dict(options)).eval()
    parameters = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    return {"parameters": int(parameters), "macs": int(counter.get_total_flops() // 2)}


def model_sizes(config: dict, models, num_classes: int) -> pd.DataFrame:
    """``parameters``, ``macs`` and ``input_size`` of each of `models` (names of the config's
    `models:` entries, built with their architecture and options), one row per model, in the
    order given: model_costs.tsv, the one table of the workflow that needs torch. The dropout
    of a grid point changes neither its parameters nor its multiply-accumulates, so it is not
    part of the model's key."""
    rows = []
    for model in models:
        if model not in config.get("models", {}):
            raise CostError(f"the fold table names the model {model!r}, which the config's models: does not define")
        arch = architecture(config, model)
        options = model_options(config, model)
        options.pop("dropout", None)
        input_size = get_spec(arch).input_size
        rows.append({"model": model, **model_size(arch, tuple(sorted(options.items())), input_size, num_classes),
                     "input_size": input_size})
    return pd.DataFrame(rows, columns=["model", "parameters", "macs", "input_size"])


def join_costs(training: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """Every cost of every grid point: :func:`training_costs` with each model's row of
    :func:`model_sizes` (model_costs.tsv) beside it. Without torch: the statistics step reads
    the sizes from model_costs.tsv."""
    missing = sorted(set(training["model"]) - set(sizes["model"]))
    if missing:
        raise CostError(f"the model sizes (model_costs.tsv) lack the model(s) {missing}")
    keys = [c for c in training.columns if c not in ("work", "seconds", "jobs")]
    table = training.merge(sizes[["model", "parameters", "macs", "input_size"]], on="model", how="left",
                           validate="many_to_one")
    for column in ("parameters", "macs", "input_size"):
        table[column] = table[column].astype("int64")
    return table[[*keys, "work", "parameters", "macs", "seconds", "jobs", "input_size"]]


def point_costs(folds: pd.DataFrame, config: dict, num_classes: int, keys=None) -> pd.DataFrame:
    """Every cost of every grid point in the fold table: the grid's keys, ``work``, ``parameters``,
    ``macs``, ``seconds``, ``jobs`` and ``input_size`` (:func:`join_costs` of
    :func:`training_costs` and :func:`model_sizes`)."""
    table = training_costs(folds, keys)
    return join_costs(table, model_sizes(config, table["model"].unique(), num_classes))
