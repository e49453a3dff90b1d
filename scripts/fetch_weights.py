#!/usr/bin/env python
"""Download a pretrained weights file once and check its SHA256 against the prefix in its
file name (torch.hub's NAME-HASH.EXT convention, which torchvision's weights follow), e.g.:

    python scripts/fetch_weights.py --url https://download.pytorch.org/models/mobilenet_v2-b0353104.pth \
        --dest resources/weights/mobilenet_v2-b0353104.pth

The file appears at DEST only when it is whole and its hash is right. Offline, it stops with
a message that says what to download and where to put it."""

import argparse
import logging
import sys
from pathlib import Path

from cvgrid.weights import WeightsError, fetch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="where the file is (https://, file://)")
    p.add_argument("--dest", type=Path, required=True, help="where it goes")
    p.add_argument("--sha256", default=None, help="expected SHA256 or its prefix (default: the one in the URL's file name)")
    p.add_argument("--config-hint", default="", help="the config key that points at an existing copy instead")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        fetch(a.url, a.dest, a.sha256, a.config_hint)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    logging.info("downloaded %s to %s (hash checked)", a.url, a.dest)


if __name__ == "__main__":
    main()
