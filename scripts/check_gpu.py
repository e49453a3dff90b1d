"""The GPU check before any training job (rule check_gpu): one small job, submitted like a
training job, that fails the run once, with one message, where training jobs would fail by the
hundred (a torch wheel the driver cannot run, a node without its GPU); it also says whether the
images fit in the GPU's free memory (if not, training moves them batch by batch).

    python scripts/check_gpu.py --images results/data/images.npy --device auto \
        --precision auto --gpus-requested 1 --out results/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cvgrid import hardware
from cvgrid.io import write_json


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="images.npy from prepare_dataset.py")
    p.add_argument("--device", default="auto", help="training.device: auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", help="training.precision")
    p.add_argument("--gpus-requested", type=int, default=0, help="the rule's resources: gpu")
    p.add_argument("--models-at-once", type=int, default=1,
                   help="models a training job trains at the same time on a GPU (parallel folds): each needs "
                        "its memory reserve beside the images")
    p.add_argument("--out", type=Path, required=True, help="JSON record of what was found")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        record = hardware.gpu_check(a.device, a.precision, a.gpus_requested, a.images, models=a.models_at_once)
    except (hardware.CudaUnusable, ValueError) as error:
        sys.exit(f"error: {error}")
    logging.info("GPU check: %s", json.dumps(record, sort_keys=True))
    if not record["data_fits_on_device"]:
        logging.warning("the training jobs will keep the images in pinned host memory and move them to the GPU "
                        "batch by batch (slower, the same numbers): %s", record["memory"])
    write_json(record, a.out)


if __name__ == "__main__":
    sys.exit(main())
