#!/usr/bin/env python
"""Decode every image of DATA_DIR/CLASS/*.{jpg,jpeg,png} once into one uint8 array file
(N, size, size, 3) and an index (sample, file, label, class_name)."""

import argparse
import logging
import sys
from pathlib import Path

from cvgrid.data import DataError, prepare_dataset, save_prepared
from cvgrid.io import write_json


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--size", type=int, required=True, help="stored width and height in pixels")
    p.add_argument("--skip-unreadable", action="store_true", help="skip and list unreadable images")
    p.add_argument("--images", type=Path, required=True, help="output .npy")
    p.add_argument("--index", type=Path, required=True, help="output .tsv")
    p.add_argument("--report", type=Path, required=True, help="output .json: counts, ignored and skipped files")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        images, index, report = prepare_dataset(a.data_dir, a.size, a.skip_unreadable)
    except DataError as error:
        sys.exit(f"error: {error}")
    save_prepared(images, index, a.images, a.index)
    write_json({**report, "data_dir": str(a.data_dir), "size": a.size,
                "classes": index.groupby("class_name").size().to_dict()}, a.report)
    logging.info("%d images, %d classes, %d ignored files, %d unreadable", len(index),
                 index["label"].nunique(), len(report["ignored_files"]), len(report["unreadable_files"]))


if __name__ == "__main__":
    main()
