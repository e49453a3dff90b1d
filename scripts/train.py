#!/usr/bin/env python
"""Train one model on one or several cross-validation folds in this one process (one after the
other, or on a GPU --parallel-folds at the same time), and write each fold's metrics.json, history.tsv and predictions.tsv into its own
folder. The grid point's training settings come as one JSON object (the rule `train` passes
cvgrid.grid.point_settings of the point: its axes, the rest of `training:`,
the augmentation policy's numbers and the model's options), e.g.:

    python scripts/train.py --images results/data/images.npy --index results/data/index.tsv \
        --folds results/data/folds.tsv --repeat 0 --fold 0 --settings '{"model": "model_a",
        "batch_size": 32, "learning_rate": 0.0004, "augmentation": "none", "rotation_degrees": 0.0,
        "shift_fraction": 0.0, "zoom_fraction": 0.0, "max_epochs": 50, "patience": 10, "seed": 0}' \
        --precision auto --threads 2 --tensorboard --out-dir /tmp/fold0

Settings it leaves out take cvgrid.training.TrainSettings' defaults (the reference recipe:
Adam, constant rate, no weight decay or label smoothing). Several folds: one value per fold for
--repeat, --fold, --out-dir and --checkpoint, in the same order (`--repeat 0 0 --fold 0 1
--out-dir /tmp/fold0 /tmp/fold1`).
"""

import argparse
import json
import sys
from pathlib import Path

from cvgrid import job
from cvgrid.training import settings_from_json


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="images.npy from prepare_dataset.py")
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py")
    p.add_argument("--folds", type=Path, required=True, help="folds.tsv from make_folds.py")
    p.add_argument("--repeat", type=int, nargs="+", required=True, help="the repeat of each fold to train")
    p.add_argument("--fold", type=int, nargs="+", required=True, help="the folds to train, in this order")
    p.add_argument("--settings", type=json.loads, required=True,
                   help="JSON object: the grid point's training settings (cvgrid.grid.point_settings)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16"], required=True,
                   help="auto: bf16 where native, else fp16 on CUDA / fp32 on the CPU; fp16: CUDA only")
    p.add_argument("--threads", type=int, required=True, help="CPU threads for torch")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--gpus-requested", type=int, default=0,
                   help="the GPUs the rule asked for (resources: gpu): inside a SLURM job without a GPU, "
                        "more than 0 stops the job before it trains (hardware.CudaUnusable)")
    p.add_argument("--out-dir", type=Path, nargs="+", required=True, help="where each fold's three result files go")
    p.add_argument("--checkpoint", type=Path, nargs="+", default=None, help="each fold resumes from / saves to its file")
    p.add_argument("--checkpoint-seconds", type=float, default=0.0,
                   help="at most one checkpoint per fold in this many seconds (always at a fold's end and on SIGTERM)")
    p.add_argument("--parallel-folds", type=int, default=1,
                   help="on a GPU, train this many of the folds at the same time (training.parallel_folds; "
                        "the same result per fold); on the CPU 1, said in the log")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=False,
                   help="also write each fold's per-epoch curves as TensorBoard event files beside its history.tsv (the workflow passes training.tensorboard; off when run on its own)")
    p.add_argument("--weights", type=Path, default=None,
                   help="pretrained weights file for the model's backbone (read, never downloaded)")
    a = p.parse_args(argv)
    job.configure_logging()
    counts = {len(a.repeat), len(a.fold), len(a.out_dir), len(a.checkpoint or a.fold)}
    if len(counts) != 1:
        p.error("--repeat, --fold, --out-dir and --checkpoint need one value per fold, in the same order")
    try:
        fold_settings = [
            settings_from_json(a.settings, repeat=repeat, fold=fold,
                               weights=None if a.weights is None else str(a.weights))
            for repeat, fold in zip(a.repeat, a.fold)
        ]
        job.run_folds(fold_settings=fold_settings, images_path=a.images, index_path=a.index, folds_path=a.folds,
                      out_dirs=a.out_dir, checkpoint_paths=a.checkpoint, precision=a.precision, device=a.device,
                      threads=a.threads, checkpoint_seconds=a.checkpoint_seconds, tensorboard=a.tensorboard,
                      gpus_requested=a.gpus_requested, parallel_folds=a.parallel_folds)
    except job.INPUT_ERRORS as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
