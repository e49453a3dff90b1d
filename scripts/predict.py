#!/usr/bin/env python
"""Predict the class of image files with a final model (results/final/MODEL/).

Prints one line per image that could be read: file, predicted class, probability of that
class; tab-separated (--header adds a header line) or, with --format json, one JSON object
per line ({"file", "predicted_class", "probability"}). Images may have any size and mode
(they are read like the prepare step reads the data set). A folder contributes its image
files (.jpg .jpeg .png .bmp .gif .tif .tiff .webp, recursively).

Exit status: 0 if every input was predicted; 1 if any file could not be read (each is named
on stderr; the others are still predicted and printed); 2 for a bad model folder or bad
arguments.

    python scripts/predict.py --model-dir results/final/model_a photo.jpg more_photos/
"""

import argparse
import sys
from pathlib import Path

from cvgrid.model_folder import ModelFolderError, read_info
from cvgrid.predict import format_lines, list_inputs, open_backend, predict_files


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model-dir", "-m", type=Path, required=True,
                   help="folder with model.json, model.onnx, model.pt (results/final/MODEL)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                   help="auto (default): onnxruntime with model.onnx if available, else PyTorch with model.pt")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv", help="tsv (default) or json (JSON lines)")
    p.add_argument("--header", action="store_true", help="TSV: print a header line first")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", help="PyTorch backend only: cpu, cuda or cuda:N")
    a = p.parse_args(argv)
    try:
        info = read_info(a.model_dir)
        backend, note = open_backend(a.model_dir, info, a.backend, a.device)
    except ModelFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if note:
        print(f"note: {note}", file=sys.stderr)
    files = list_inputs(a.inputs)
    if not files:
        print("error: no image files found in " + " ".join(map(str, a.inputs)), file=sys.stderr)
        return 2
    predictions, failures = predict_files(files, backend, info, a.batch_size)
    for line in format_lines(predictions, a.format, a.header):
        print(line)
    sys.stdout.flush()
    for name, error in failures:
        print(f"cannot read {name}: {error}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(files)} file(s) could not be read", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
