#!/usr/bin/env python
"""Download a zip archive of CLASS/*.jpg folders (by default the pinned Sign Language Digits
commit), keep its SUBDIR as DEST, and check the class and image counts."""

import argparse
import logging
import sys
from pathlib import Path

from cvgrid.data import DataError, download_dataset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--subdir", required=True, help="folder inside the archive that holds the class folders")
    p.add_argument("--expected-classes", type=int, required=True)
    p.add_argument("--expected-images", type=int, required=True)
    p.add_argument("--dest", type=Path, required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        download_dataset(a.url, a.dest, a.subdir, a.expected_classes, a.expected_images)
    except (DataError, OSError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
