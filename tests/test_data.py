"""Images on disk -> one uint8 array and an index: listing, decoding every mode and size,
unreadable files, bad folders, the archive download, and the real photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import COLOURS, REPO, build_archive, write_image_folder
from cvgrid.data import (
    DataError,
    array_bytes,
    download_dataset,
    list_images,
    load_image,
    load_prepared,
    memory_limit,
    prepare_dataset,
    save_prepared,
)

RED, BLUE = (230, 20, 20), (20, 20, 230)


def solid(colour, size=(40, 40)):
    return Image.new("RGB", size, colour)


def close(pixel, colour, tol=25):
    return np.all(np.abs(np.asarray(pixel, dtype=int) - np.asarray(colour, dtype=int)) <= tol)


# --- listing -------------------------------------------------------------------------------


def test_list_images_sorts_classes_and_files_and_reports_what_it_ignores(tmp_path):
    for name in ("zebra", "apple", "mango"):
        (tmp_path / name).mkdir()
        for stem in ("b", "a", "c"):
            solid(RED).save(tmp_path / name / f"{stem}.jpg")
    (tmp_path / "apple" / "X.JPEG").write_bytes((tmp_path / "apple" / "a.jpg").read_bytes())
    solid(BLUE).save(tmp_path / "mango" / "d.PNG")
    (tmp_path / "apple" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "zebra" / "notes.txt").write_text("taken on a Tuesday\n")
    (tmp_path / ".hidden").mkdir()  # a hidden folder is not a class
    solid(RED).save(tmp_path / ".hidden" / "x.jpg")
    (tmp_path / "README.md").write_text("top-level files are not classes\n")

    listing = list_images(tmp_path)
    index = listing.index
    assert list(index.columns) == ["file", "label", "class_name"]
    classes = index.drop_duplicates("label")
    assert classes["class_name"].tolist() == ["apple", "mango", "zebra"]
    assert classes["label"].tolist() == [0, 1, 2]
    assert index[index["class_name"] == "apple"]["file"].tolist() == [
        "apple/X.JPEG", "apple/a.jpg", "apple/b.jpg", "apple/c.jpg"]
    assert "mango/d.PNG" in set(index["file"])
    assert len(index) == 11
    assert not index["file"].str.contains(r"DS_Store|notes\.txt|hidden").any()
    assert sorted(listing.ignored) == ["apple/.DS_Store", "zebra/notes.txt"]


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [
        ("missing", "nope"),
        ("no_classes", "no class folders"),
        ("single_class", "single class"),
        ("empty_class", "empty_one"),
        ("only_notes", "notes_only"),
    ],
)
def test_unusable_folders_are_named(tmp_path, layout, fragment):
    root = tmp_path / "data"
    if layout == "missing":
        root = tmp_path / "nope"
    elif layout == "no_classes":
        root.mkdir()
        solid(RED).save(root / "loose.jpg")
    elif layout == "single_class":
        write_image_folder(root, n_classes=1, per_class=3)
    elif layout == "empty_class":
        write_image_folder(root, n_classes=2, per_class=3)
        (root / "empty_one").mkdir()
    elif layout == "only_notes":
        write_image_folder(root, n_classes=2, per_class=3)
        (root / "notes_only").mkdir()
        (root / "notes_only" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=fragment) as error:
        prepare_dataset(root, 16)
    assert str(root) in str(error.value)


# --- decoding ------------------------------------------------------------------------------


def write_mixed_folder(root):
    """Class 'colour' and class 'grey', every file a different mode, size or format."""
    (root / "colour").mkdir(parents=True)
    (root / "grey").mkdir()
    expected = {}  # file -> expected mean colour of the decoded image, or None

    solid(RED, (200, 200)).save(root / "colour" / "big.jpg", quality=95)
    expected["colour/big.jpg"] = RED
    solid(BLUE, (16, 16)).save(root / "colour" / "small.png")
    expected["colour/small.png"] = BLUE
    solid(RED, (90, 30)).save(root / "colour" / "wide.jpeg", quality=95)
    expected["colour/wide.jpeg"] = RED
    solid(BLUE, (40, 40)).convert("P").save(root / "colour" / "palette.png")
    expected["colour/palette.png"] = BLUE
    solid(RED, (50, 50)).convert("CMYK").save(root / "colour" / "cmyk.jpg", quality=95)
    expected["colour/cmyk.jpg"] = RED
    rgba = Image.new("RGBA", (40, 40), (*BLUE, 255))
    rgba.paste((*RED, 0), (0, 0, 40, 20))  # top half fully transparent (red hidden under it)
    rgba.save(root / "colour" / "rgba.png")
    expected["colour/rgba.png"] = None
    # EXIF orientation 6: the viewer rotates the stored pixels 90 degrees clockwise. Upright
    # the photo is red on top and blue below, so it is stored red on the left.
    upright = Image.new("RGB", (40, 40), BLUE)
    upright.paste(RED, (0, 0, 40, 20))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(root / "colour" / "rotated.jpg", quality=95, exif=exif)
    expected["colour/rotated.jpg"] = None

    Image.new("L", (30, 30), 100).save(root / "grey" / "grey.jpg", quality=95)
    expected["grey/grey.jpg"] = (100, 100, 100)
    Image.fromarray(np.full((20, 25), 40000, np.uint16)).save(root / "grey" / "deep.png")
    level = 40000 / 65535 * 255  # 16 bits scaled to 8, not clipped at 255
    expected["grey/deep.png"] = (level, level, level)
    Image.new("LA", (24, 24), (180, 255)).save(root / "grey" / "la.png")
    expected["grey/la.png"] = (180, 180, 180)
    return expected


def test_prepare_dataset_decodes_every_mode_and_size_to_rgb(tmp_path):
    expected = write_mixed_folder(tmp_path / "data")
    assert Image.open(tmp_path / "data" / "grey" / "deep.png").mode == "I;16"
    assert Image.open(tmp_path / "data" / "colour" / "cmyk.jpg").mode == "CMYK"
    assert Image.open(tmp_path / "data" / "colour" / "palette.png").mode == "P"

    images, index, report = prepare_dataset(tmp_path / "data", 32)
    assert images.shape == (len(expected), 32, 32, 3)
    assert images.dtype == np.uint8
    assert index["sample"].tolist() == list(range(len(expected)))
    assert set(index["file"]) == set(expected)
    for row in index.itertuples():
        assert row.label == (0 if row.file.startswith("colour/") else 1)
        assert row.class_name == row.file.split("/")[0]
        colour = expected[row.file]
        if colour is not None:
            assert close(images[row.sample].reshape(-1, 3).mean(0), colour), (row.file, images[row.sample].mean((0, 1)))
    assert report["images"] == len(expected)
    assert report["unreadable_files"] == [] and report["ignored_files"] == []

    by_file = dict(zip(index["file"], index["sample"]))
    rgba = images[by_file["colour/rgba.png"]]
    assert close(rgba[4, 16], (255, 255, 255), tol=3)  # transparent -> white
    assert close(rgba[28, 16], BLUE)
    rotated = images[by_file["colour/rotated.jpg"]]
    assert close(rotated[4, 16], RED) and close(rotated[28, 16], BLUE), "EXIF rotation not applied"
    assert close(rotated[8, 2], rotated[8, 29], tol=30)  # upright: no left/right split


def test_load_image_squashes_non_square_images(tmp_path):
    # Left third red, right two thirds blue: squashed (not cropped), the split stays at a third.
    picture = Image.new("RGB", (90, 30), BLUE)
    picture.paste(RED, (0, 0, 30, 30))
    picture.save(tmp_path / "wide.png")
    array = load_image(tmp_path / "wide.png", 30)
    assert array.shape == (30, 30, 3)
    assert close(array[15, 5], RED) and close(array[15, 15], BLUE) and close(array[15, 28], BLUE)


def write_broken(root):
    write_image_folder(root, n_classes=2, per_class=4)
    good = (root / "class_0" / "img_000.jpg").read_bytes()
    (root / "class_0" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "class_1" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)


def test_an_unreadable_image_stops_preparation_naming_the_file(tmp_path):
    write_broken(tmp_path / "data")
    with pytest.raises(DataError, match=r"truncated\.jpg|garbage\.png") as error:
        prepare_dataset(tmp_path / "data", 16)
    assert "skip_unreadable" in str(error.value)


@pytest.mark.parametrize("name", ["truncated.jpg", "garbage.png"])
def test_each_kind_of_unreadable_image_is_named(tmp_path, name):
    write_broken(tmp_path / "data")
    other = {"truncated.jpg": "class_1/garbage.png", "garbage.png": "class_0/truncated.jpg"}[name]
    (tmp_path / "data" / other).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        prepare_dataset(tmp_path / "data", 16)


def test_skip_unreadable_skips_and_lists_them(tmp_path):
    write_broken(tmp_path / "data")
    images, index, report = prepare_dataset(tmp_path / "data", 16, skip_unreadable=True)
    assert images.shape == (8, 16, 16, 3)
    assert len(index) == 8 and index["sample"].tolist() == list(range(8))
    assert sorted(u["file"] for u in report["unreadable_files"]) == ["class_0/truncated.jpg", "class_1/garbage.png"]
    assert all(u["error"] for u in report["unreadable_files"])
    assert not index["file"].isin(["class_0/truncated.jpg", "class_1/garbage.png"]).any()
    assert (index.groupby("label").size() == 4).all()
    assert report["images"] == 8


def test_prepared_files_round_trip_and_a_mismatch_is_refused(tmp_path):
    images, index, _ = prepare_dataset(write_image_folder(tmp_path / "data", 2, 3, suffix=".png"), 12)
    save_prepared(images, index, tmp_path / "out" / "images.npy", tmp_path / "out" / "index.tsv")
    images2, index2 = load_prepared(tmp_path / "out" / "images.npy", tmp_path / "out" / "index.tsv")
    assert np.array_equal(images, images2)
    pd.testing.assert_frame_equal(index, index2)
    # PNG is lossless: every pixel of a class is its colour plus the writer's +-20 noise.
    for row in index.itertuples():
        assert close(images[row.sample].reshape(-1, 3).mean(0), COLOURS[row.label], tol=6)
    index2.iloc[:-1].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="short.tsv"):
        load_prepared(tmp_path / "out" / "images.npy", tmp_path / "short.tsv")


def test_prepare_dataset_cli_writes_array_index_and_report(tmp_path):
    data = write_image_folder(tmp_path / "data", 2, 3)
    (data / "class_1" / "notes.txt").write_text("x")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_dataset.py"), "--data-dir", str(data), "--size", "20",
           "--images", str(out / "images.npy"), "--index", str(out / "index.tsv"), "--report", str(out / "report.json")]
    subprocess.run(cmd, check=True, capture_output=True)
    assert np.load(out / "images.npy").shape == (6, 20, 20, 3)
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == {"class_0": 3, "class_1": 3}
    assert report["ignored_files"] == ["class_1/notes.txt"]
    # A bad folder: non-zero exit, the folder named, nothing written.
    bad = subprocess.run([*cmd[:3], str(tmp_path / "missing"), *cmd[4:6], "--images", str(tmp_path / "b.npy"),
                          "--index", str(tmp_path / "b.tsv"), "--report", str(tmp_path / "b.json")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "missing" in bad.stderr
    assert not (tmp_path / "b.npy").exists()


def prepare_cli(data, out, size, *extra, env=None):
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_dataset.py"), "--data-dir", str(data), "--size", str(size),
           "--images", str(out / "images.npy"), "--index", str(out / "index.tsv"), "--report", str(out / "report.json"),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("skip", [False, True])
def test_the_array_file_is_written_in_place_and_is_the_same_bytes_as_a_saved_array(tmp_path, skip):
    # Written into a memory-mapped file (never held twice); same bytes as np.save of the same
    # images, so files prepared before this change stay valid. With skipped images the file
    # keeps only the rows decoded.
    data = write_image_folder(tmp_path / "data", 3, 5)
    if skip:
        write_broken(tmp_path / "data")
    assert prepare_cli(data, tmp_path / "out", 24, *(["--skip-unreadable"] if skip else [])).returncode == 0
    images, index, _ = prepare_dataset(data, 24, skip_unreadable=skip)
    save_prepared(images, index, tmp_path / "saved" / "images.npy", tmp_path / "saved" / "index.tsv")
    written = (tmp_path / "out" / "images.npy").read_bytes()
    assert written == (tmp_path / "saved" / "images.npy").read_bytes()
    assert np.load(tmp_path / "out" / "images.npy").shape == (len(index), 24, 24, 3)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_data_set_larger_than_the_jobs_memory_stops_before_decoding(tmp_path):
    # SLURM says the job has 1 MB; 10 images at 400 x 400 make a 4.8 MB array. The folder also
    # holds an unreadable image: the memory message comes first, so nothing was decoded.
    write_broken(tmp_path / "data")
    result = prepare_cli(tmp_path / "data", tmp_path / "out", 400, env={**os.environ, "SLURM_MEM_PER_NODE": "1"})
    assert result.returncode != 0
    assert array_bytes(10, 400) == 4_800_000
    assert "10 images at image_size 400 make a 4.8 MB array, more than the SLURM job's memory" in result.stderr
    assert "1.0 MB" in result.stderr
    assert "SLURM_MEM_PER_NODE" in result.stderr and "image_size" in result.stderr and "mem_mb" in result.stderr
    assert "truncated" not in result.stderr and "garbage" not in result.stderr
    assert not (tmp_path / "out" / "images.npy").exists()


def test_memory_limit_reads_the_cgroup_slurm_and_the_host(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("3000000000\n")
    (v2 / "memory.current").write_text("1000000000\n")
    assert memory_limit(v2, {}, meminfo) == (2_000_000_000, f"the cgroup limit ({v2 / 'memory.max'})")
    (v2 / "memory.max").write_text("max\n")  # no limit: the host's available memory
    assert memory_limit(v2, {}, meminfo) == (8_192_000_000, "the host's available memory (MemAvailable)")
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("5000000000\n")
    (v1 / "memory.usage_in_bytes").write_text("0\n")
    assert memory_limit(v1.parent, {}, meminfo)[0] == 5_000_000_000
    (v1 / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    assert memory_limit(v1.parent, {"SLURM_MEM_PER_NODE": "4000"}, meminfo) == (
        4000 * 2**20, "the SLURM job's memory (SLURM_MEM_PER_NODE)")


# --- download ------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    source = write_image_folder(tmp_path / "src", n_classes=3, per_class=4, suffix=".JPG")
    return build_archive(tmp_path / "upstream.zip", source, top="Some-Repo-4b09433ef9d5")


def test_download_dataset_keeps_the_subfolder_as_dest(tmp_path, archive):
    dest = tmp_path / "resources" / "digits"
    download_dataset(archive.as_uri(), dest, "Dataset", expected_classes=3, expected_images=12)
    assert sorted(p.name for p in dest.iterdir()) == ["class_0", "class_1", "class_2"]
    assert all(len(list((dest / c).glob("*.JPG"))) == 4 for c in ("class_0", "class_1", "class_2"))
    assert not (dest / "README.md").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["digits"]  # no temporary folder left
    images, index, _ = prepare_dataset(dest, 16)
    assert images.shape == (12, 16, 16, 3)


@pytest.mark.parametrize(("classes", "images"), [(3, 13), (4, 12)])
def test_download_with_other_counts_fails_and_leaves_nothing(tmp_path, archive, classes, images):
    dest = tmp_path / "resources" / "digits"
    with pytest.raises(DataError, match=f"expected {classes} and {images}"):
        download_dataset(archive.as_uri(), dest, "Dataset", expected_classes=classes, expected_images=images)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_an_offline_download_says_what_to_download_and_how_to_set_data_dir(tmp_path):
    nowhere = (tmp_path / "offline" / "archive.zip").as_uri()
    with pytest.raises(DataError) as error:
        download_dataset(nowhere, tmp_path / "dest", "Dataset", expected_classes=3, expected_images=12)
    message = str(error.value)
    assert f"cannot download the data set {nowhere}" in message and "No such file" in message
    assert "data_dir=/path/to/Dataset" in message
    assert not (tmp_path / "dest").exists() and not list(tmp_path.glob(".dest*"))


def test_download_of_an_archive_without_the_subfolder_or_not_a_zip_fails(tmp_path, archive):
    dest = tmp_path / "resources" / "digits"
    with pytest.raises(DataError, match="Images"):
        download_dataset(archive.as_uri(), dest, "Images", 3, 12)
    not_zip = tmp_path / "page.html"
    not_zip.write_text("<html>rate limited</html>")
    with pytest.raises(DataError, match="not a zip"):
        download_dataset(not_zip.as_uri(), dest, "Dataset", 3, 12)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


# --- the real photos -----------------------------------------------------------------------


@pytest.mark.real_data
def test_real_photos_decode_to_100_by_100(real_data_dir, tmp_path):
    sizes = {}
    for path in sorted(real_data_dir.glob("*/*.JPG")):
        with Image.open(path) as image:
            sizes[path] = image.size
    assert len(sizes) == 2062
    big = [p for p, s in sizes.items() if s != (100, 100)]
    assert len(big) == 3  # the 3024 x 3024 photos, EXIF-rotated
    subset = big + [p for p in sizes if p not in big][::100]
    for path in subset:
        array = load_image(path, 100)
        assert array.shape == (100, 100, 3) and array.dtype == np.uint8
        assert array.std() > 10, path  # a photo, not a flat or black frame
    # The big photos, decoded, look like the rest of their class (hand on a light background):
    # their mean brightness is in the range of the small ones'.
    small_means = [load_image(p, 100).mean() for p in subset[3:]]
    for path in big:
        assert min(small_means) - 30 <= load_image(path, 100).mean() <= max(small_means) + 30


def test_the_folder_record_follows_names_and_sizes_not_times(tmp_path):
    """What decides whether the data steps run again (cvgrid.plan.record_folder)."""
    import os
    import shutil

    from cvgrid.plan import folder_fingerprint, folder_record, record_folder

    data = write_image_folder(tmp_path / "data", n_classes=2, per_class=3)
    record = tmp_path / "work" / "dataset_fingerprint.json"
    first = folder_record(data)
    assert first["folder"] == str(data) and first["files"] == 6
    assert first["bytes"] == sum(p.stat().st_size for p in data.rglob("*.jpg"))

    # The first record never makes results prepared before it out of date: it gets the time 0.
    assert record_folder(data, record) == ("new", None)
    assert record.stat().st_mtime == 0 and json.loads(record.read_text()) == first

    # New times, hidden files, another path: the same images. The record names the new folder
    # (the data steps read the folder named there) and keeps its time.
    copy = shutil.copytree(data, tmp_path / "copy", copy_function=shutil.copyfile)
    os.utime(copy / "class_0" / "img_000.jpg", (1, 1))
    (copy / "class_0" / ".DS_Store").write_bytes(b"\0" * 10)
    (copy / ".snakemake_timestamp").touch()
    assert folder_fingerprint(copy) == folder_fingerprint(data)
    assert record_folder(copy, record) == ("moved", first)
    assert record.stat().st_mtime == 0 and json.loads(record.read_text())["folder"] == str(copy)
    assert record_folder(copy, record)[0] == "same"

    # An image added, resized or renamed: changed, and the record's new time triggers the rerun.
    changes = [
        lambda: shutil.copyfile(copy / "class_1" / "img_000.jpg", copy / "class_1" / "img_new.jpg"),
        lambda: (copy / "class_1" / "img_new.jpg").write_bytes(b"\xff" * 7),
        lambda: (copy / "class_1" / "img_new.jpg").rename(copy / "class_1" / "img_renamed.jpg"),
    ]
    previous = json.loads(record.read_text())
    for change in changes:
        change()
        state, before = record_folder(copy, record)
        assert state == "changed" and before == previous and record.stat().st_mtime > 0
        previous = json.loads(record.read_text())
        assert previous == folder_record(copy) != before

    # An unreadable record counts as a change.
    record.write_text("{not json")
    assert record_folder(copy, record)[0] == "changed"
