"""What the workflow plans at parse time besides the grid (cvgrid.grid's): the pretrained
weights (which file each model's jobs read, which files the local rule fetch_weights downloads)
and the record of the image folder's contents that decides when the data steps run again.

Torch-free, like cvgrid.grid and the registry (cvgrid.models): the Snakefile calls this for
every dry run (tests/test_structure.py checks that planning never imports torch).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cvgrid.io import write_json
from cvgrid.models import get_spec
from cvgrid.weights import WeightsError, file_name, hash_prefix

WEIGHTS_DIR = "resources/weights"


def plan_weights(config: dict) -> tuple[dict, dict]:
    """What the workflow needs for the grid's models with `pretrained: imagenet`:
    ({model: {"path": the file its jobs load, "url": where fetch_weights gets it, or None
    for a configured weights_file}}, {file name in resources/weights/: {"url", "models"}})."""
    models = [
        m for m in config["grid"]["model"]
        if (config["models"].get(m) or {}).get("pretrained", "none") == "imagenet"
    ]
    weights, fetches = {}, {}
    for model in models:
        entry = config["models"][model]
        if entry.get("weights_file"):
            path = entry["weights_file"]
            if not os.path.isfile(path):
                raise WeightsError(
                    f"models.{model}.weights_file is {path}, which is not a file"
                    f" (a relative path starts in the working directory {os.getcwd()})"
                )
            weights[model] = {"path": path, "url": None}
            continue
        pretrained = get_spec(model).pretrained
        if pretrained is None:
            raise WeightsError(
                f"models.{model}.pretrained is imagenet, but the registry entry of {model}"
                " (scripts/cvgrid/models.py) names no pretrained weights"
            )
        url = entry.get("weights_url") or pretrained.url
        name = file_name(url)
        hash_prefix(name)  # a mirror's file name must carry the hash too
        weights[model] = {"path": f"{WEIGHTS_DIR}/{name}", "url": url}
        fetch_entry = fetches.setdefault(name, {"url": url, "models": []})
        if fetch_entry["url"] != url:
            raise WeightsError(f"two weight URLs end in the same file name {name}: {fetch_entry['url']} and {url}")
        fetch_entry["models"].append(model)
    return weights, fetches


def folder_fingerprint(folder: str | os.PathLike) -> dict:
    """What is in an image folder, cheaply: the number of files, their bytes, and a SHA-256 of
    every file's path (relative to the folder) and size. Hidden files and folders are left out
    (.DS_Store, .snakemake_timestamp). Times are not part of it: a copy, a re-sync or a new
    machine changes them without changing the images."""
    root = Path(folder)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                entries.append((path.relative_to(root).as_posix(), path.stat().st_size))
    digest = hashlib.sha256("".join(f"{path}\t{size}\n" for path, size in sorted(entries)).encode())
    return {"files": len(entries), "bytes": sum(size for _, size in entries), "sha256": digest.hexdigest()}


def folder_record(folder: str | os.PathLike) -> dict:
    """The record of an image folder: where it is (absolute path) and its fingerprint."""
    return {"folder": os.path.abspath(folder), **folder_fingerprint(folder)}


def record_folder(folder: str | os.PathLike, record: str | os.PathLike) -> tuple[str, dict | None]:
    """Keep `record` (a JSON file, the input of the data steps, which read the folder named in
    it) in step with the folder, so that the data steps run again when, and only when, the
    images change.

    Snakemake judges a folder input by the folder's own time, which changes when the folder is
    copied or re-synced (then every finished training job would run again) and does not change
    when an image is added to a class folder (then the new image would be missed). Returns
    (what happened, the previous record or None):
    "changed": other images; the record is rewritten, and its new time makes the data steps
    run again. "moved": the same images in another folder; the record names the new folder and
    keeps its time, so nothing runs again. "new": a first record gets the time 0, so that it
    never makes results already prepared from this folder out of date. "same": untouched."""
    record = Path(record)
    current = folder_record(folder)
    try:
        previous = json.loads(record.read_text())
    except FileNotFoundError:
        previous = None
    except ValueError:  # unreadable: the images may have changed
        previous = {}
    if previous == current:
        return "same", previous
    if previous is None:
        write_json(current, record)
        os.utime(record, (0, 0))
        return "new", None
    contents = {key: value for key, value in current.items() if key != "folder"}
    if {key: value for key, value in previous.items() if key != "folder"} == contents:
        times = record.stat()
        write_json(current, record)
        os.utime(record, ns=(times.st_atime_ns, times.st_mtime_ns))
        return "moved", previous
    write_json(current, record)
    return "changed", previous

