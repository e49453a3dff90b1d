"""Images on disk -> one uint8 array plus an index; and the data set download.

A data set is a folder of class folders: DATA_DIR/CLASS_NAME/*.{jpg,jpeg,png}. Classes are
sorted by name and numbered from 0 in that order; files are sorted by name within a class.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from cvgrid.io import atomic_path, write_tsv

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class DataError(ValueError):
    """The image folder cannot be used; the message names the folder or file at fault."""


@dataclass
class ImageListing:
    index: pd.DataFrame  # columns: file, label, class_name (file relative to the data folder)
    ignored: list[str] = field(default_factory=list)  # files that are not images, relative


def list_images(data_dir: str | Path) -> ImageListing:
    """Find CLASS/*.{jpg,jpeg,png} under `data_dir`; other files are ignored and listed."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data_dir {str(root)!r} does not exist or is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"data_dir {str(root)!r} holds no class folders (expected CLASS/*.jpg)")
    rows, ignored = [], []
    for label, class_dir in enumerate(class_dirs):
        files = []
        for path in sorted(class_dir.rglob("*")):
            if path.is_dir():
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                files.append(path)
            else:
                ignored.append(str(path.relative_to(root)))
        if not files:
            raise DataError(f"class folder {str(class_dir)!r} holds no .jpg, .jpeg or .png images")
        rows += [(str(p.relative_to(root)), label, class_dir.name) for p in files]
    if len(class_dirs) < 2:
        raise DataError(f"data_dir {str(root)!r} has a single class folder; a classifier needs two or more")
    return ImageListing(pd.DataFrame(rows, columns=["file", "label", "class_name"]), ignored)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) -> RGB, upright per its EXIF tag."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits; convert("L") would clip everything above 255.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white rather than whatever colour hides under them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image to a (size, size, 3) uint8 array (squashed, not cropped, if not square)."""
    with Image.open(path) as image:
        image = to_rgb(image)
        if image.size != (size, size):
            # PIL's bilinear filter widens with the scale factor, so downscaling is antialiased.
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def prepare_dataset(data_dir: str | Path, size: int, skip_unreadable: bool = False):
    """Decode every image once. Returns (images (N, size, size, 3) uint8, index, report dict)."""
    listing = list_images(data_dir)
    arrays, keep, unreadable = [], [], []
    for row in listing.index.itertuples():
        path = Path(data_dir) / row.file
        try:
            arrays.append(load_image(path, size))
            keep.append(row.Index)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            if not skip_unreadable:
                raise DataError(
                    f"cannot read image {str(path)!r}: {error}. Remove it, or set "
                    "skip_unreadable: true in the config to skip and list such files."
                ) from error
            log.warning("skipping unreadable image %s: %s", path, error)
            unreadable.append({"file": row.file, "error": str(error)})
    index = listing.index.loc[keep].reset_index(drop=True)
    index.insert(0, "sample", np.arange(len(index)))
    report = {"images": len(index), "ignored_files": listing.ignored, "unreadable_files": unreadable}
    return np.stack(arrays), index, report


def save_prepared(images: np.ndarray, index: pd.DataFrame, images_path: Path, index_path: Path) -> None:
    with atomic_path(images_path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, images)
    write_tsv(index, index_path)


def load_prepared(images_path: str | Path, index_path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    images = np.load(images_path)
    index = pd.read_csv(index_path, sep="\t", dtype={"file": str, "class_name": str})
    if len(images) != len(index):
        raise DataError(f"{images_path} has {len(images)} images but {index_path} lists {len(index)}")
    return images, index


def class_names(index: pd.DataFrame) -> list[str]:
    """The class name of every label 0..K-1, from an index (index.tsv)."""
    names = index.groupby("label")["class_name"].first().sort_index()
    if list(names.index) != list(range(len(names))):
        raise DataError(f"index labels are not 0..{len(names) - 1}: {list(names.index)}")
    return names.astype(str).tolist()


def offline_message(url: str, subdir: str, reason: str) -> str:
    return (
        f"cannot download the data set {url} ({reason}).\n"
        f"Either run the workflow where there is internet, or download the archive elsewhere:\n"
        f"    {url}\n"
        f"unpack it, and point data_dir at its folder {subdir}/ (the one that holds the class folders):\n"
        f"    snakemake ... --config data_dir=/path/to/{subdir}\n"
        f"(or set data_dir in your config file)."
    )


def download_dataset(
    url: str, dest: str | Path, subdir: str, expected_classes: int, expected_images: int
) -> None:
    """Download a zip archive, move its `subdir` to `dest`, and check the class and image counts.

    `dest` appears only once the archive is complete and checked; a failed or partial
    download leaves nothing behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as work:
        archive = Path(work) / "archive.zip"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise DataError(offline_message(url, subdir, str(reason))) from error
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(Path(work) / "extracted")
        except zipfile.BadZipFile as error:
            raise DataError(f"download from {url} is not a zip archive: {error}") from error
        matches = [p for p in (Path(work) / "extracted").glob(f"*/{subdir}") if p.is_dir()]
        matches += [p for p in [Path(work) / "extracted" / subdir] if p.is_dir()]
        if len(matches) != 1:
            raise DataError(f"archive from {url} has no single folder {subdir!r}")
        listing = list_images(matches[0])
        classes = listing.index["class_name"].nunique()
        if (classes, len(listing.index)) != (expected_classes, expected_images):
            raise DataError(
                f"archive from {url} holds {classes} classes and {len(listing.index)} images in "
                f"{subdir!r}; expected {expected_classes} and {expected_images}"
            )
        if dest.exists():
            shutil.rmtree(dest)
        matches[0].rename(dest)
