"""A training job's per-epoch curves as TensorBoard event files, in the fold's folder beside
history.tsv, so that ``tensorboard --logdir results/train`` shows every fold of a run while
it goes on (one TensorBoard run per fold folder). Switched by ``training.tensorboard``.

torch's SummaryWriter queues each event and a thread of its own writes them, so ``epoch``
costs the training loop only the building of a few small protocol buffers
(scripts/benchmark_curves.py measures it).

    curves = open_curves(out_dir, enabled=training_tensorboard)
    for epoch in ...:  # from 1, or from the epoch after a resumed checkpoint
        curves.epoch(epoch, {"loss": ..., "val_accuracy": ...})
    curves.close()
"""

from __future__ import annotations

import math
from pathlib import Path


class EpochCurves:
    """Scalars per epoch into the event files of `log_dir`.

    The files are opened at the first epoch written: 1 from the start, or the one after the
    checkpoint a retry resumed from. Events of an earlier attempt from that epoch on are then
    hidden (SummaryWriter's purge_step), so a retried or resumed fold shows each epoch once."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self._writer = None

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        """One finished epoch: each value under its name (history.tsv's column names). A value
        that is None or not finite (a diverged loss) is left out, as TensorBoard cannot draw it."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # flush_secs: the writer's thread writes what is queued at least this often, so a
            # run being watched shows an epoch within seconds of its end.
            self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=epoch, flush_secs=10)
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(name, value, global_step=epoch)

    def close(self) -> None:
        """Write what is queued and close the files (none were opened if no epoch finished)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NoCurves:
    """training.tensorboard: false: nothing is written."""

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def open_curves(out_dir: str | Path, enabled: bool) -> EpochCurves | NoCurves:
    """The per-epoch writer of the fold whose files go to `out_dir`, or one that writes nothing."""
    return EpochCurves(out_dir) if enabled else NoCurves()


def read_curves(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in `log_dir` as {name: [(epoch, value), ...]}, as
    TensorBoard reads them (earlier attempts' purged epochs hidden); for tests and checks."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
