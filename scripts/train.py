#!/usr/bin/env python
"""Train one model on one or several cross-validation folds, one after the other in this one
process, and write each fold's metrics.json, history.tsv and predictions.tsv into its own
folder. Every value comes from the config (the rules `train` and `train_folds` pass them all),
e.g.:

    python scripts/train.py --images results/data/images.npy --index results/data/index.tsv \
        --folds results/data/folds.tsv --repeat 0 --fold 0 --model model_a --batch-size 32 \
        --learning-rate 4e-4 --augmentation none --augmentations '{"none": {"rotation_degrees": 0,
        "shift_fraction": 0, "zoom_fraction": 0}}' --max-epochs 50 --patience 10 --seed 0 \
        --precision auto --threads 2 --out-dir /tmp/fold0

Several folds: one value per fold for --repeat, --fold, --out-dir and --checkpoint, in the same
order (`--repeat 0 0 --fold 0 1 --out-dir /tmp/fold0 /tmp/fold1`).
"""

import argparse
import json
import sys
from pathlib import Path

from cvgrid import job
from cvgrid.grid import ConfigError, augmentation_policy
from cvgrid.training import TrainSettings


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="images.npy from prepare_dataset.py")
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py")
    p.add_argument("--folds", type=Path, required=True, help="folds.tsv from make_folds.py")
    p.add_argument("--repeat", type=int, nargs="+", required=True, help="the repeat of each fold to train")
    p.add_argument("--fold", type=int, nargs="+", required=True, help="the folds to train, in this order")
    p.add_argument("--model", required=True, help="a name from cvgrid.models.MODELS")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--augmentation", required=True, help="name of the augmentation policy")
    p.add_argument("--augmentations", type=json.loads, required=True,
                   help="JSON object: the config's augmentation policies by name")
    p.add_argument("--max-epochs", type=int, required=True)
    p.add_argument("--patience", type=int, required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of weights, shuffling and augmentation")
    p.add_argument("--precision", choices=["auto", "fp32"], required=True)
    p.add_argument("--threads", type=int, required=True, help="CPU threads for torch")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--out-dir", type=Path, nargs="+", required=True, help="where each fold's three result files go")
    p.add_argument("--checkpoint", type=Path, nargs="+", default=None, help="each fold resumes from / saves to its file")
    p.add_argument("--checkpoint-seconds", type=float, default=0.0,
                   help="at most one checkpoint per fold in this many seconds (always at a fold's end and on SIGTERM)")
    p.add_argument("--weights", type=Path, default=None,
                   help="pretrained weights file for the model's backbone (read, never downloaded)")
    a = p.parse_args(argv)
    job.configure_logging()
    counts = {len(a.repeat), len(a.fold), len(a.out_dir), len(a.checkpoint or a.fold)}
    if len(counts) != 1:
        p.error("--repeat, --fold, --out-dir and --checkpoint need one value per fold, in the same order")
    try:
        policy = augmentation_policy(a.augmentations, a.augmentation)
        fold_settings = [
            TrainSettings(
                model=a.model, batch_size=a.batch_size, learning_rate=a.learning_rate, augmentation=a.augmentation,
                **policy, max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, repeat=repeat, fold=fold,
                weights=None if a.weights is None else str(a.weights),
            )
            for repeat, fold in zip(a.repeat, a.fold)
        ]
        job.run_folds(fold_settings, a.images, a.index, a.folds, a.out_dir, a.checkpoint, a.precision, a.device,
                      a.threads, a.checkpoint_seconds)
    except (ConfigError, *job.INPUT_ERRORS) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
