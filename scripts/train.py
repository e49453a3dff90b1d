#!/usr/bin/env python
"""Train one model on one cross-validation fold and write metrics.json, history.tsv and
predictions.tsv. Runs with or without Snakemake, e.g.:

    python scripts/train.py --images results/data/images.npy --index results/data/index.tsv \
        --folds results/data/folds.tsv --repeat 0 --fold 0 --model model_a --batch-size 32 \
        --learning-rate 4e-4 --out-dir /tmp/fold0
"""

import argparse
import sys
from pathlib import Path

from cvgrid import job
from cvgrid.training import TrainSettings
from cvgrid.weights import WeightsError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="images.npy from prepare_dataset.py")
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py")
    p.add_argument("--folds", type=Path, required=True, help="folds.tsv from make_folds.py")
    p.add_argument("--repeat", type=int, default=0)
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--model", required=True, help="a name from cvgrid.models.MODELS")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--augmentation", default="none", help="name of the augmentation policy (a label)")
    p.add_argument("--rotation-degrees", type=float, default=0.0)
    p.add_argument("--shift-fraction", type=float, default=0.0)
    p.add_argument("--zoom-fraction", type=float, default=0.0)
    p.add_argument("--max-epochs", type=int, default=50)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and augmentation")
    p.add_argument("--precision", choices=["auto", "fp32"], default="auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--out-dir", type=Path, required=True, help="where the three result files go")
    p.add_argument("--checkpoint", type=Path, default=None, help="resume from / save to this file")
    p.add_argument("--weights", type=Path, default=None,
                   help="pretrained weights file for the model's backbone (read, never downloaded)")
    a = p.parse_args(argv)
    settings = TrainSettings(
        model=a.model, batch_size=a.batch_size, learning_rate=a.learning_rate,
        augmentation=a.augmentation, rotation_degrees=a.rotation_degrees,
        shift_fraction=a.shift_fraction, zoom_fraction=a.zoom_fraction,
        max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, repeat=a.repeat, fold=a.fold,
        weights=None if a.weights is None else str(a.weights),
    )
    job.configure_logging()
    try:
        job.run(
            settings, a.images, a.index, a.folds,
            metrics_path=a.out_dir / "metrics.json", history_path=a.out_dir / "history.tsv",
            predictions_path=a.out_dir / "predictions.tsv", checkpoint_path=a.checkpoint,
            precision=a.precision, device=a.device, threads=a.threads,
        )
    except WeightsError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
