#!/usr/bin/env python
"""Train one model on one cross-validation fold and write metrics.json, history.tsv and
predictions.tsv. Every value comes from the config (the rule `train` passes them all), e.g.:

    python scripts/train.py --images results/data/images.npy --index results/data/index.tsv \
        --folds results/data/folds.tsv --repeat 0 --fold 0 --model model_a --batch-size 32 \
        --learning-rate 4e-4 --augmentation none --augmentations '{"none": {"rotation_degrees": 0,
        "shift_fraction": 0, "zoom_fraction": 0}}' --max-epochs 50 --patience 10 --seed 0 \
        --precision auto --threads 2 --out-dir /tmp/fold0
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
    p.add_argument("--repeat", type=int, required=True)
    p.add_argument("--fold", type=int, required=True)
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
    p.add_argument("--out-dir", type=Path, required=True, help="where the three result files go")
    p.add_argument("--checkpoint", type=Path, default=None, help="resume from / save to this file")
    p.add_argument("--weights", type=Path, default=None,
                   help="pretrained weights file for the model's backbone (read, never downloaded)")
    a = p.parse_args(argv)
    job.configure_logging()
    try:
        settings = TrainSettings(
            model=a.model, batch_size=a.batch_size, learning_rate=a.learning_rate, augmentation=a.augmentation,
            **augmentation_policy(a.augmentations, a.augmentation),
            max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, repeat=a.repeat, fold=a.fold,
            weights=None if a.weights is None else str(a.weights),
        )
        job.run_fold(settings, a.images, a.index, a.folds, a.out_dir, a.checkpoint, a.precision, a.device, a.threads)
    except (ConfigError, *job.INPUT_ERRORS) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
