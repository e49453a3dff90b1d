"""The benchmark CLI end to end with tiny settings: every figure is in the JSON, positive,
and the derived ratios agree with the throughputs. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

MODELS = ("model_a", "model_b")
VARIANTS = ("ordinary", "project_augmented", "project_plain", "ceiling")
ROUNDS = 4  # even: the median is the mean of the middle two, not one of the rounds


def run_benchmark(data_dir, out, *extra, image_size=40):
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--data-dir", str(data_dir),
           "--models", ",".join(MODELS), "--steps", "2", "--warmup", "1", "--batch-size", "4",
           "--workers", "1", "--threads", "1", "--rounds", str(ROUNDS), "--image-size", str(image_size), "--out", str(out), *extra]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    return result.stdout, json.loads(out.read_text())


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def check_figures(stdout: str, figures: dict, steps=2, batch_size=4):
    machine = figures["machine"]
    assert machine["precision"] in ("fp32", "bf16", "fp16")
    assert machine["cpu"] and positive(machine["threads"])
    assert machine["cpu"] in stdout or machine.get("gpu", "") in stdout
    assert set(figures["models"]) == set(MODELS)
    for name in MODELS:
        m = figures["models"][name]
        for variant in VARIANTS:
            f = m[variant]
            assert f["images"] == steps * batch_size, (name, variant)
            assert positive(f["seconds"]) and positive(f["images_per_second"]), (name, variant, f)
            assert f["images_per_second"] == pytest.approx(f["images"] / f["seconds"])
        assert m["ordinary"]["precision"] == "fp32" and m["ordinary"]["memory_format"] == "contiguous"
        for variant in ("project_augmented", "project_plain", "ceiling"):
            assert m[variant]["precision"] == machine["precision"]
            assert m[variant]["memory_format"] == "channels_last"
        rounds = {v: np.array(m[v]["rounds_images_per_second"]) for v in VARIANTS}
        for v in VARIANTS:  # the figure is the median round, the best is kept beside it
            assert len(rounds[v]) == ROUNDS
            assert m[v]["images_per_second"] == pytest.approx(np.median(rounds[v]))
            assert m[v]["best_images_per_second"] == pytest.approx(rounds[v].max())
        # Ratios round by round, then the median: (t2 - t3) / t2 with t the seconds per image.
        assert positive(m["ratio_project_to_ordinary"])
        assert m["ratio_project_to_ordinary"] == pytest.approx(np.median(rounds["project_augmented"] / rounds["ordinary"]))
        t2, t3 = 1 / rounds["project_augmented"], 1 / rounds["ceiling"]
        assert m["share_not_in_ceiling"] == pytest.approx(np.median((t2 - t3) / t2))
        assert m["share_not_in_ceiling_plain"] == pytest.approx(np.median(1 - rounds["project_plain"] / rounds["ceiling"]))
        assert f"{m['ratio_project_to_ordinary']:.2f} x" in stdout


def test_benchmark_on_a_generated_image_folder(image_folder, tmp_path):
    data = image_folder(n_classes=3, per_class=6, size=(40, 40))
    stdout, figures = run_benchmark(data, tmp_path / "bench" / "figures.json", "--precision-matrix")
    check_figures(stdout, figures)
    # The policy and learning rate are the reference config's.
    assert figures["settings"]["augmentation"] == {"rotation_degrees": 20, "shift_fraction": 0.1, "zoom_fraction": 0.1}
    assert figures["settings"]["learning_rate"] == 0.0004
    assert "ratio 2/1" in stdout and "share of 2's time not in 3" in stdout
    matrix = figures["models"]["model_a"]["precision_matrix"]
    assert {"fp32/contiguous", "fp32/channels_last", "bf16/contiguous", "bf16/channels_last"} <= set(matrix)
    assert all(positive(v) for v in matrix.values())


@pytest.mark.real_data
def test_benchmark_on_the_real_images(real_data_dir, tmp_path):
    """A few images of each class of the real photos (incl. the 3024 x 3024 ones' folder layout)."""
    stdout, figures = run_benchmark(real_data_dir, tmp_path / "figures.json", "--limit", "3", image_size=100)
    check_figures(stdout, figures)
    assert figures["settings"]["limit_per_class"] == 3


def test_benchmark_refuses_a_missing_data_dir_and_an_unknown_policy(tmp_path, image_folder):
    benchmark = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--data-dir"]
    result = subprocess.run([*benchmark, str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "nowhere" in result.stderr
    result = subprocess.run([*benchmark, str(image_folder()), "--augmentation", "flip"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "'flip'" in result.stderr and "config.yaml" in result.stderr
    result = subprocess.run(benchmark[:-1], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "--data-dir" in result.stderr  # no default outside the repository
