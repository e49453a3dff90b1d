"""scripts/bench_scale.py runs every part end to end at small sizes and leaves nothing behind
(its figures are measurements, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import REPO


def test_every_part_runs_and_the_temporary_folder_is_removed(tmp_path):
    before = set(Path(tempfile.gettempdir()).glob("bench_scale.*"))
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_scale.py"), "--jobs", "20", "--gather-jobs", "20",
         "--panels", "2", "--images", "50", "--cap", "60", "--timeout", "300"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    parts = [row.split(" | ")[0].strip("| ") for row in rows]
    assert parts == ["gather (summarize_cv.py)", "figure: heatmap", "figure: fold plot",
                     "figure: parallel coordinates", "data (prepare_dataset.py, 100 px)",
                     "scheduling (greedy, subsample 100)"], result.stdout
    assert all(" ok" in row for row in rows), result.stdout  # the stub grid ran to cv_summary.tsv
    assert set(Path(tempfile.gettempdir()).glob("bench_scale.*")) == before
