#!/usr/bin/env python
"""Decode every image of DATA_DIR/CLASS/*.{jpg,jpeg,png} once into one uint8 array file
(N, size, size, 3) and an index (sample, file, label, class_name). The workflow names the folder
by its record (--data-record results/data/dataset_fingerprint.json, cvgrid.plan.record_folder)."""

import argparse
import json
import logging
import sys
from pathlib import Path

from cvgrid.data import DataError, prepare_dataset
from cvgrid.io import write_json, write_tsv


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="the image folder")
    source.add_argument("--data-record", type=Path, help="a record of the image folder: JSON with its path in 'folder'")
    p.add_argument("--size", type=int, required=True, help="stored width and height in pixels")
    p.add_argument("--skip-unreadable", action="store_true", help="skip and list unreadable images")
    p.add_argument("--images", type=Path, required=True, help="output .npy")
    p.add_argument("--index", type=Path, required=True, help="output .tsv")
    p.add_argument("--report", type=Path, required=True, help="output .json: counts, ignored and skipped files")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if a.data_record:
        a.data_dir = Path(json.loads(a.data_record.read_text())["folder"])
    try:
        # Written straight into --images, after a check of memory and disk space.
        _, index, report = prepare_dataset(a.data_dir, a.size, a.skip_unreadable, out=a.images)
    except DataError as error:
        sys.exit(f"error: {error}")
    write_tsv(index, a.index)
    write_json({**report, "data_dir": str(a.data_dir), "size": a.size,
                "classes": index.groupby("class_name").size().to_dict()}, a.report)
    logging.info("%d images, %d classes, %d ignored files, %d unreadable", len(index),
                 index["label"].nunique(), len(report["ignored_files"]), len(report["unreadable_files"]))


if __name__ == "__main__":
    main()
