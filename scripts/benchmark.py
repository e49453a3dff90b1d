#!/usr/bin/env python
"""Time training steps of model A and model B three ways in one run on this machine:
(1) the ordinary PyTorch recipe (ImageFolder + per-image PIL transforms + DataLoader, fp32),
(2) the project's training path (cvgrid.training, with and without augmentation),
(3) the compute ceiling (training step on batches already on the device), and print the
images per second, the ratio 2/1 and the share of 2's time not in 3; all figures go to --out.

    python scripts/benchmark.py --out results/benchmark.json
    python scripts/benchmark.py --models model_a --steps 60 --compile --precision-matrix
"""

import argparse
import json
import sys
from pathlib import Path

from cvgrid.benchmark import DEFAULT_DATA_DIR, BenchConfig, run


def parse_steps(text: str) -> dict[str, int]:
    """'40' (every model) or 'model_a=40,model_b=12'."""
    steps = {}
    for part in text.split(","):
        name, _, count = part.rpartition("=")
        steps[name.strip() or "*"] = int(count)
        if int(count) < 1:
            raise argparse.ArgumentTypeError(f"steps must be positive, got {part!r}")
    return steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="model_a,model_b", help="comma-separated model names")
    p.add_argument("--steps", type=parse_steps, default=parse_steps("model_a=40,model_b=12"),
                   help="timed steps: N for every model, or model_a=40,model_b=12 (default)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each timing (default 5)")
    p.add_argument("--rounds", type=int, default=7,
                   help="timing rounds per variant, interleaved across variants; the median counts, ratios are taken round by round (default 7)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help=f"folder of CLASS/*.jpg (default {DEFAULT_DATA_DIR})")
    p.add_argument("--image-size", type=int, default=100, help="size of the prepared array (config image_size)")
    p.add_argument("--limit", type=int, default=None, help="only the first LIMIT images of each class")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of the ordinary recipe (default: one per core, at most 8)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile on the project path and its compile seconds per fold")
    p.add_argument("--fold-epochs", type=int, default=20, help="epochs of a typical fold, for --compile")
    p.add_argument("--precision-matrix", action="store_true",
                   help="also time the bare step in fp32/bf16 x channels-first/channels_last")
    p.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    a = p.parse_args(argv)
    if not a.data_dir.is_dir():
        sys.exit(f"error: --data-dir {a.data_dir} is not a folder of CLASS/*.jpg")
    cfg = BenchConfig(
        models=tuple(m.strip() for m in a.models.split(",") if m.strip()), steps=a.steps, warmup=a.warmup,
        batch_size=a.batch_size, data_dir=a.data_dir, image_size=a.image_size, limit=a.limit,
        device=a.device, workers=a.workers, threads=a.threads, compile=a.compile,
        fold_epochs=a.fold_epochs, precision_matrix=a.precision_matrix, rounds=a.rounds,
    )
    result = run(cfg, log=lambda line: print(line, flush=True))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {a.out}")


if __name__ == "__main__":
    sys.exit(main())
