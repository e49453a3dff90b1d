"""The pretrained weights the workflow plans at parse time: which file each model's jobs
read, and which files the local rule fetch_weights downloads. The grid itself is
cvgrid.grid's.

Torch-free, like cvgrid.grid and the registry (cvgrid.models): the Snakefile calls this for
every dry run (tests/test_structure.py checks that planning never imports torch).
"""

from __future__ import annotations

import os

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
