"""Images on disk -> one uint8 array plus an index; and the data set download.

A data set is a folder of class folders: DATA_DIR/CLASS_NAME/*.{jpg,jpeg,png}. Classes are
sorted by name and numbered from 0 in that order; files are sorted by name within a class.
"""

from __future__ import annotations

import logging
import os
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


def array_bytes(images: int, size: int) -> int:
    """Bytes of the prepared array of `images` images at `size` x `size` x 3."""
    return images * size * size * 3


def _read_int(path: Path) -> int | None:
    """An integer from a cgroup file; None where it is absent or says "max" (no limit)."""
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def memory_limit(cgroup_root: str | Path = "/sys/fs/cgroup", environ=os.environ,
                 meminfo: str | Path = "/proc/meminfo") -> tuple[int, str]:
    """The memory left to this process in bytes and what sets it: the least of what the
    cgroup it runs in has left (v2 memory.max - memory.current, v1 memory.limit_in_bytes -
    memory.usage_in_bytes; a SLURM job's --mem is enforced this way), SLURM's --mem
    (SLURM_MEM_PER_NODE, MB) and the host's available memory (MemAvailable)."""
    root = Path(cgroup_root)
    found = []
    own = ""
    try:  # cgroup v2: "0::/path/of/this/process"
        own = next(line.split("::", 1)[1].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
    except (OSError, StopIteration):
        pass
    for folder, limit_name, usage_name in ((root / own.lstrip("/"), "memory.max", "memory.current"),
                                           (root, "memory.max", "memory.current"),
                                           (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")):
        limit = _read_int(folder / limit_name)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
            found.append((limit - (_read_int(folder / usage_name) or 0), f"the cgroup limit ({folder / limit_name})"))
            break
    if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
        found.append((int(environ["SLURM_MEM_PER_NODE"]) * 2**20, "the SLURM job's memory (SLURM_MEM_PER_NODE)"))
    try:
        kib = next(int(line.split()[1]) for line in Path(meminfo).read_text().splitlines()
                   if line.startswith("MemAvailable:"))
        found.append((kib * 1024, "the host's available memory (MemAvailable)"))
    except (OSError, StopIteration, ValueError):
        found.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "the host's free memory"))
    return min(found)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def check_space(images: int, size: int, out: str | Path | None = None) -> None:
    """Stop before decoding where the array cannot be held: more than the memory left to this
    job (the array file is memory-mapped here, but every training job and the diagnostics load
    it whole) or, with `out`, more than the free disk space of its folder."""
    needed = array_bytes(images, size)
    what = f"{images} images at image_size {size} make a {_size(needed)} array"
    memory, source = memory_limit()
    if needed > memory:
        raise DataError(
            f"{what}, more than {source}: {_size(memory)}. Lower image_size in the config, or give the"
            " data steps more memory (SLURM: they ask for it from the number and size of the images,"
            " workflow/rules/data.smk; `--set-resources prepare_dataset:mem_mb=...` overrides it)."
        )
    if out is not None:
        folder = Path(out).parent
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if needed > free:
            raise DataError(f"{what}, more than the {_size(free)} free on {folder}. Free disk space there,"
                            " or lower image_size in the config.")


# Rows copied at a time when the array file is shortened (skipped images).
COPY_ROWS = 4096


def _decode_into(images: np.ndarray, listing: ImageListing, data_dir: Path, size: int, skip_unreadable: bool):
    """Decode the listed images into consecutive rows of `images`; (rows kept, unreadable)."""
    keep, unreadable = [], []
    for row in listing.index.itertuples():
        path = data_dir / row.file
        try:
            images[len(keep)] = load_image(path, size)
            keep.append(row.Index)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            if not skip_unreadable:
                raise DataError(
                    f"cannot read image {str(path)!r}: {error}. Remove it, or set "
                    "skip_unreadable: true in the config to skip and list such files."
                ) from error
            log.warning("skipping unreadable image %s: %s", path, error)
            unreadable.append({"file": row.file, "error": str(error)})
    if not keep:
        raise DataError(f"data_dir {str(data_dir)!r}: no image could be read")
    return keep, unreadable


def prepare_dataset(data_dir: str | Path, size: int, skip_unreadable: bool = False, out: str | Path | None = None):
    """Decode every image once into an (N, size, size, 3) uint8 array allocated before the
    first decode (after check_space): in memory, or with `out` straight into that .npy file
    (np.lib.format.open_memmap, written whole or not at all), so that the array is never held
    twice. Returns (images, index, report); with `out` the images are the file, memory-mapped."""
    data_dir = Path(data_dir)
    listing = list_images(data_dir)
    shape = (len(listing.index), size, size, 3)
    check_space(shape[0], size, out)
    if out is None:
        images = np.empty(shape, np.uint8)
        keep, unreadable = _decode_into(images, listing, data_dir, size, skip_unreadable)
        images = images[: len(keep)]
    else:
        with atomic_path(out) as tmp:
            images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            keep, unreadable = _decode_into(images, listing, data_dir, size, skip_unreadable)
            if len(keep) < shape[0]:  # skipped images: the file keeps only the rows decoded
                _shorten(images, len(keep), tmp)
            else:
                images.flush()
            del images
        images = np.load(out, mmap_mode="r")
    index = listing.index.loc[keep].reset_index(drop=True)
    index.insert(0, "sample", np.arange(len(index)))
    report = {"images": len(index), "ignored_files": listing.ignored, "unreadable_files": unreadable}
    return images, index, report


def _shorten(images: np.memmap, rows: int, path: Path) -> None:
    """Replace the .npy file `path` (memory-mapped as `images`) by its first `rows` rows."""
    short = path.with_name(path.name + ".short")
    try:
        kept = np.lib.format.open_memmap(short, mode="w+", dtype=np.uint8, shape=(rows, *images.shape[1:]))
        for start in range(0, rows, COPY_ROWS):
            kept[start:start + COPY_ROWS] = images[start:min(start + COPY_ROWS, rows)]
        kept.flush()
        del kept
        os.replace(short, path)
    finally:
        short.unlink(missing_ok=True)


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
