#!/usr/bin/env python
"""Refit one model's chosen grid point (its best from cv_summary.tsv, or with --decision the
point that final.choose picked, read now, not when the workflow was planned) on ALL images with the CV protocol (seeded stratified early-stopping split,
best weights restored) and write OUT_DIR/{model.pt, model.onnx, model.json, history.tsv,
final_model.html}. Every value comes from the config (the rule `refit_best` passes them all;
--config is the config's training, augmentations and models, from which the settings the grid
point does not set are filled in as for its CV jobs):

    python scripts/refit_best.py --summary results/cv_summary.tsv --model model_a \\
        --images results/data/images.npy --index results/data/index.tsv \\
        --config '{"training": {"max_epochs": 50, "patience": 10, "seed": 0, "precision": "auto",
        "checkpoint_seconds": 60}, "augmentations": {"none": {}}, "models": {"model_a": {}}}' \\
        --split-seed 42 --validation-fraction 0.1 --threads 2 --metric accuracy --out-dir results/final/model_a
"""

import argparse
import json
import sys
from pathlib import Path

from cvgrid import job
from cvgrid.final import FinalError, refit
from cvgrid.metrics import METRICS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--summary", type=Path, required=True, help="cv_summary.tsv (best grid point first per model)")
    p.add_argument("--decision", type=Path, default=None,
                   help="decision.tsv of the statistics step (final.choose other than best): the point to refit")
    p.add_argument("--model", required=True, help="which model's best grid point to refit")
    p.add_argument("--images", type=Path, required=True, help="images.npy from prepare_dataset.py")
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py")
    p.add_argument("--config", type=json.loads, required=True,
                   help="JSON object: the config's training, augmentations and models")
    p.add_argument("--split-seed", type=int, required=True, help="seed of the early-stopping split (config cv.seed)")
    p.add_argument("--validation-fraction", type=float, required=True)
    p.add_argument("--threads", type=int, required=True, help="CPU threads for torch")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--gpus-requested", type=int, default=0,
                   help="the GPUs the rule asked for (resources: gpu), as train.py's")
    p.add_argument("--groups", type=Path, default=None, help="TSV file, group: no group in train and validation")
    p.add_argument("--weights", type=Path, default=None,
                   help="pretrained weights file for the backbone, as train.py --weights (read, never downloaded)")
    p.add_argument("--checkpoint", type=Path, default=None, help="resume from / save to this file")
    p.add_argument("--metric", choices=sorted(METRICS), required=True,
                   help="statistics.metric: what ranks the grid points and what the statistics compare")
    p.add_argument("--checkpoint-seconds", type=float, default=0.0,
                   help="write the checkpoint at most this often (seconds); 0: after every epoch")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=False,
                   help="training.tensorboard: the refit's curves as TensorBoard event files beside its history.tsv (the workflow passes training.tensorboard; off when run on its own)")
    p.add_argument("--out-dir", type=Path, required=True)
    a = p.parse_args(argv)
    job.configure_logging()
    try:
        refit(summary_path=a.summary, model_name=a.model, decision_path=a.decision, images_path=a.images, index_path=a.index,
              out_dir=a.out_dir, config=a.config, split_seed=a.split_seed,
              validation_fraction=a.validation_fraction, groups_path=a.groups, weights_path=a.weights,
              checkpoint_path=a.checkpoint, device=a.device, threads=a.threads, metric=a.metric,
              gpus_requested=a.gpus_requested, checkpoint_seconds=a.checkpoint_seconds, tensorboard=a.tensorboard)
    except (FinalError, *job.INPUT_ERRORS) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
