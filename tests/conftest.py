"""Shared fixtures: the library on sys.path, small image folders written with PIL, the real
Sign Language Digits images (skip on a laptop, fail on CI), and the real `snakemake` CLI."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SNAKEFILE = REPO / "workflow" / "Snakefile"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

# The real photos (10 classes, 2062 images); CVGRID_REAL_DATA overrides the location.
REAL_DATA = Path(os.environ.get("CVGRID_REAL_DATA", REPO.parent / "shared" / "datasets" / "sign-language-digits"))

# Clearly different colours, one per class, so that a tiny model learns them in an epoch or two.
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30), (200, 40, 220), (30, 210, 210)]


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    """Skip with `reason` on a laptop; fail on CI (env CI non-empty), where nothing may be missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def class_image(rng: np.random.Generator, colour, size=(40, 40)) -> np.ndarray:
    """An RGB image of one colour with a little noise (uint8, H x W x 3)."""
    w, h = size
    base = np.array(colour, dtype=np.int16)[None, None, :]
    noise = rng.integers(-20, 21, size=(h, w, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, n_classes=3, per_class=12, size=(40, 40), suffix=".jpg", seed=0) -> Path:
    """Write ROOT/class_K/img_J.{jpg,png}, each class its own colour. Returns root.
    `per_class`: the images of every class, or a list of each class's (unequal classes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    counts = [per_class] * n_classes if isinstance(per_class, int) else list(per_class)
    for k in range(n_classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(counts[k]):
            Image.fromarray(class_image(rng, COLOURS[k % len(COLOURS)], size)).save(
                folder / f"img_{j:03d}{suffix}", quality=95
            )
    return root


@pytest.fixture
def image_folder(tmp_path):
    """Factory: image_folder(n_classes=3, per_class=12, size=(40, 40), suffix='.jpg', name='data')."""

    def make(n_classes=3, per_class=12, size=(40, 40), suffix=".jpg", name="data", seed=0) -> Path:
        return write_image_folder(tmp_path / name, n_classes, per_class, size, suffix, seed)

    return make


def build_archive(zip_path: Path, source: Path, top="Some-Repo-0123abcd", subdir="Dataset") -> Path:
    """A zip laid out like a GitHub archive: TOP/SUBDIR/CLASS/*.JPG, plus a README at TOP."""
    with zipfile.ZipFile(zip_path, "w") as zipped:
        zipped.writestr(f"{top}/README.md", "not an image\n")
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zipped.write(path, f"{top}/{subdir}/{path.relative_to(source).as_posix()}")
    return zip_path


@pytest.fixture
def real_data_dir() -> Path:
    need(
        REAL_DATA.is_dir() and any(REAL_DATA.glob("*/*.JPG")),
        f"the real Sign Language Digits images are not at {REAL_DATA} (set CVGRID_REAL_DATA)",
    )
    return REAL_DATA


def snakemake_exe() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    if not exe.exists():
        found = shutil.which("snakemake")
        need(found is not None, f"no snakemake next to {sys.executable} nor on PATH")
        return found
    return str(exe)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, configfile: Path | str, *args: str,
                      snakefile: Path = SNAKEFILE) -> tuple[list[str], dict]:
    """The real snakemake CLI on this repository's Snakefile (or another copy's `snakefile`) in
    `workdir`: (command, environment).

    The rules call `python`: the venv's bin folder goes first on PATH so that they get the
    interpreter running the tests."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    return [snakemake_exe(), "-s", str(snakefile), "-d", str(workdir), "--configfile", str(configfile), *args], env


def run_snakemake(workdir: Path, configfile: Path | str, *args: str, check: bool = True, timeout=600,
                  snakefile: Path = SNAKEFILE):
    """Run snakemake_command; on an unexpected exit status the output is printed."""
    cmd, env = snakemake_command(workdir, configfile, *args, snakefile=snakefile)
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        print("$", " ".join(cmd))
        print("--- stdout ---\n", result.stdout)
        print("--- stderr ---\n", result.stderr)
        raise AssertionError(f"snakemake exited with {result.returncode}: {' '.join(args)}")
    return result


@pytest.fixture
def snakemake():
    return run_snakemake


# The tiny grid of the workflow tests: 2 grid points x 2 folds of model A at 32 px, 2 epochs.
# fp32 and one thread: the same numbers locally and in a SLURM job on this CPU. device cpu: the
# GPU of the test cluster (tests/slurm/start.sh) is not real, and `auto` stops a job in a GPU
# allocation that torch cannot use (cvgrid.hardware.training_device).
TINY_CONFIG = {
    "image_size": 32,
    "cv": {"folds": 2, "repeats": 1, "seed": 42, "validation_fraction": 0.1},
    "training": {"max_epochs": 2, "patience": 2, "seed": 0, "precision": "fp32", "threads": 1, "device": "cpu"},
    "models": {"model_a": {}},
    "augmentations": {"none": {}},
    "grid": {"model": ["model_a"], "batch_size": [16], "learning_rate": [0.001, 0.0004], "augmentation": ["none"]},
}


def tiny_config(data_dir, **changes) -> dict:
    """TINY_CONFIG reading `data_dir`. A change to a section (cv=..., training=..., grid=...)
    replaces only the keys it names; any other change replaces the key."""
    config = copy.deepcopy(TINY_CONFIG) | {"data_dir": str(data_dir)}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("tiny_run")
    data = write_image_folder(root / "data", n_classes=3, per_class=20, size=(40, 40))
    (data / "class_1" / ".DS_Store").write_bytes(b"\0")  # not an image: ignored and reported
    settings = tiny_config(data, cv={"validation_fraction": 0.2}, training={"patience": 1})
    configfile = write_config(root / "config.yaml", settings)
    work = root / "work"
    work.mkdir()
    first = run_snakemake(work, configfile, "--cores", "2")
    report = run_snakemake(work, configfile, "--report", "report.html")
    return SimpleNamespace(data=data, work=work, config=configfile, settings=settings, first=first,
                           report=report, model_dir=work / "results" / "final" / "model_a")

