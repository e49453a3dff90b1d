"""Helpers for tests that need a real SLURM cluster (``@pytest.mark.slurm``).

The cluster is the single-node one from ``tests/slurm/start.sh`` (partitions
``cpu``, the default, and ``gpu``, both on node ``localhost`` with
``Gres=gpu:fake:1``; no accounting database). ``SITE_PROFILE`` is its Snakemake site
profile (partition file, no accounts, squeue for the status). Nothing here
depends on those names except the defaults of the tests.

Skip rule (fixture ``slurm_cluster``, function ``require_slurm``): when SLURM
is not reachable the test is skipped with the reason, unless the environment
variable ``CI`` is set and not empty (``CI=true``, as ``.ci/run`` and most CI
services set it; the same rule as tests/conftest.py): then the test fails, so
that a broken cluster never turns into a green run with skipped tests.

Usage in a test module::

    import pytest
    from slurm_cluster import slurm_cluster, squeue_jobs  # noqa: F401 (fixture)

    pytestmark = pytest.mark.slurm

    def test_something(slurm_cluster):
        ...

(or register the fixture for all tests with ``pytest_plugins = ["slurm_cluster"]``
in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

START_HINT = "start it with: bash tests/slurm/install.sh && bash tests/slurm/start.sh"

#: The test cluster's partitions (tests/slurm/start.sh) and its site profile for Snakemake, whose
#: partition file sends GPU jobs to GPU_PARTITION and CPU jobs to CPU_PARTITION.
CPU_PARTITION = "cpu"
GPU_PARTITION = "gpu"
SITE_PROFILE = Path(__file__).resolve().parent / "slurm" / "profile"

#: Job states after which a job does not change any more.
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

#: Node states (from ``sinfo %T``) in which a node accepts jobs.
USABLE_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing"})


class SlurmError(RuntimeError):
    """A SLURM command failed."""


def in_ci() -> bool:
    """True when the environment variable CI is set and not empty (the same rule
    as tests/conftest.py; .ci/run exports CI=true)."""
    return bool(os.environ.get("CI"))


def run(args: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    """Run a SLURM command; raise SlurmError (with its stderr) if it fails."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as err:
        raise SlurmError(f"{args[0]} not found") from err
    except subprocess.TimeoutExpired as err:
        raise SlurmError(f"{' '.join(args)} timed out after {timeout} s") from err
    if check and proc.returncode != 0:
        raise SlurmError(
            f"{' '.join(args)} exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


# ------------------------------------------------------------------ status


def slurm_available() -> tuple[bool, str]:
    """Whether a SLURM cluster answers and has a node that takes jobs.

    Returns ``(True, description)`` or ``(False, reason)``.
    """
    for cmd in ("sinfo", "squeue", "sbatch", "scontrol", "scancel"):
        if shutil.which(cmd) is None:
            return False, f"SLURM client command {cmd!r} not on PATH; {START_HINT}"
    try:
        ping = run(["scontrol", "ping"], timeout=15, check=False)
    except SlurmError as err:
        return False, f"scontrol ping failed ({err}); {START_HINT}"
    if "is UP" not in ping.stdout:
        lines = (ping.stdout + ping.stderr).strip().splitlines()
        text = lines[0].strip() if lines else f"exit status {ping.returncode}"
        return False, f"slurmctld is not running (scontrol ping: {text!r}); {START_HINT}"
    try:
        nodes = sinfo_nodes()
    except SlurmError as err:
        return False, f"sinfo failed ({err}); {START_HINT}"
    usable = [n for n in nodes if n.base_state in USABLE_NODE_STATES]
    if not usable:
        states = ", ".join(f"{n.name}={n.state}" for n in nodes) or "no nodes"
        return False, f"no SLURM node takes jobs ({states}); {START_HINT}"
    names = ", ".join(sorted({f"{n.name} ({n.state}, {n.gres})" for n in usable}))
    return True, f"SLURM is up: {names}"


def require_slurm() -> str:
    """Skip the calling test if SLURM is not available, or fail it under CI."""
    ok, reason = slurm_available()
    if not ok:
        if in_ci():
            pytest.fail(f"SLURM tests must not be skipped in CI (CI={os.environ.get('CI')!r}): {reason}")
        pytest.skip(reason)
    return reason


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Session fixture: a running SLURM cluster, else skip (fail when CI is set).

    Returns the description from :func:`slurm_available`.
    """
    return require_slurm()


# ------------------------------------------------------------------ sinfo / config


@dataclass(frozen=True)
class Node:
    name: str
    partition: str  # with a trailing "*" for the default partition
    state: str  # e.g. "idle", "mixed", "drained", "idle*" (not responding)
    cpus: int
    memory_mb: int
    gres: str  # e.g. "gpu:1", "(null)" when none

    @property
    def base_state(self) -> str:
        """State without the flags sinfo appends (``*``, ``~``, ``#``, ...)."""
        return self.state.rstrip("*~#!%$@^-")

    @property
    def is_default_partition(self) -> bool:
        return self.partition.endswith("*")


def sinfo_nodes() -> list[Node]:
    """One entry per node and partition (``sinfo -N``)."""
    out = run(["sinfo", "-N", "-h", "-o", "%N|%P|%T|%c|%m|%G"]).stdout
    nodes = []
    for line in out.splitlines():
        if not line.strip():
            continue
        name, partition, state, cpus, mem, gres = line.split("|", 5)
        nodes.append(
            Node(
                name=name,
                partition=partition,
                state=state,
                cpus=int(cpus.rstrip("+")),
                memory_mb=int(mem.rstrip("+")),
                gres=gres,
            )
        )
    return nodes


def gpu_count(gres: str) -> int:
    """Number of GPUs in a sinfo/scontrol GRES string such as ``gpu:1`` or
    ``gpu:a100:2(S:0-1),tmpfs:10``."""
    total = 0
    for item in gres.split(","):
        m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if m:
            total += int(m.group(1))
    return total


def default_partition() -> str | None:
    """The partition marked with ``*`` in sinfo (what the plugin falls back to)."""
    out = run(["sinfo", "-h", "-o", "%P"]).stdout
    for part in out.split():
        if part.endswith("*"):
            return part[:-1]
    return None


def scontrol_config() -> dict[str, str]:
    """``scontrol show config`` as a dict (keys such as MinJobAge, SelectType)."""
    out = run(["scontrol", "show", "config"]).stdout
    config = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config


def min_job_age_seconds() -> int | None:
    """MinJobAge in seconds: how long squeue/scontrol still show a finished job."""
    m = re.match(r"(\d+)", scontrol_config().get("MinJobAge", ""))
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    name: str
    state: str  # e.g. PENDING, RUNNING, COMPLETED, CANCELLED, FAILED
    reason: str  # e.g. None, Resources, Priority
    partition: str
    tres_per_job: str  # e.g. "gres:gpu:1" for --gpus=1, "N/A" for none
    comment: str  # the Snakemake SLURM plugin writes "rule_<rule>" here


# -O with a ":|" suffix: "|" after each field, no padding or truncation.
_SQUEUE_FIELDS = ("JobID", "Name", "State", "Reason", "Partition", "tres-per-job", "Comment")
_SQUEUE_FORMAT = ",".join(f"{field}:|" for field in _SQUEUE_FIELDS)


def squeue_jobs(job_ids: list[str] | None = None, all_states: bool = True) -> list[QueuedJob]:
    """Jobs that squeue knows: queued, running and, with ``all_states``, finished
    less than MinJobAge seconds ago."""
    args = ["squeue", "-h", "-O", _SQUEUE_FORMAT]
    if all_states:
        args += ["-t", "all"]
    if job_ids:
        args += ["-j", ",".join(str(j) for j in job_ids)]
    proc = run(args, check=False)
    if proc.returncode != 0:
        # squeue -j exits 1 with "Invalid job id specified" once the job is
        # purged from slurmctld (older than MinJobAge).
        if job_ids and "Invalid job id" in proc.stderr:
            return []
        raise SlurmError(f"squeue failed: {proc.stderr.strip()}")
    jobs = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        values = line.rstrip("\n").split("|")[: len(_SQUEUE_FIELDS)]
        jobs.append(QueuedJob(*(v.strip() for v in values)))
    return jobs


def squeue_state(job_id: str) -> str | None:
    """State of one job according to squeue, None when squeue does not know it."""
    for job in squeue_jobs([job_id]):
        if job.job_id == str(job_id):
            return job.state
    return None


def scontrol_show_job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o <id>`` as a dict (JobState, ExitCode, TRES, ...)."""
    out = run(["scontrol", "show", "job", "-o", str(job_id)]).stdout.strip()
    # Key=Value pairs separated by spaces; values may contain spaces (Command,
    # WorkDir, Comment), so split only before a " Key=".
    fields = re.split(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)", out)
    job = {}
    for field in fields:
        key, _, value = field.partition("=")
        job.setdefault(key, value)
    return job


def sbatch(*args: str, wrap: str, timeout: float = 30) -> str:
    """Submit ``--wrap`` with extra sbatch arguments; return the job id."""
    out = run(["sbatch", "--parsable", *args, "--wrap", wrap], timeout=timeout).stdout.strip()
    return out.split(";", 1)[0]


def scancel(job_id: str) -> None:
    run(["scancel", str(job_id)])


def wait_for_state(
    job_id: str, states: set[str] | frozenset[str], timeout: float = 60, poll: float = 0.2
) -> str:
    """Poll squeue until the job is in one of ``states``; return that state.

    Raises TimeoutError (with the last state seen) when it does not get there.
    """
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = squeue_state(job_id)
        if state in states:
            return state
        if state in FINISHED_STATES:
            break  # finished in another state: it will not change any more
        time.sleep(poll)
    raise TimeoutError(f"job {job_id} did not reach {sorted(states)} within {timeout} s (last state: {state})")


def wait_until_finished(job_id: str, timeout: float = 60) -> str:
    return wait_for_state(job_id, FINISHED_STATES, timeout=timeout)


def cancel_all(job_ids: list[str]) -> None:
    """Best-effort cleanup for tests: cancel jobs that may still be queued."""
    if job_ids:
        run(["scancel", *map(str, job_ids)], check=False)


# ------------------------------------------------------------------ Snakemake


def slurm_log_job_ids(workdir: str | os.PathLike, rule_dir: str | None = None) -> dict[str, list[Path]]:
    """SLURM job ids of a Snakemake run, from the plugin's log files.

    The plugin writes ``.snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<jobid>.log``
    (``group_<group>_<rule>/<jobid>.log`` for rules with ``group:``; the
    training rule of this workflow has one). Successful jobs' logs are kept
    only with ``slurm-keep-successful-logs`` (set in profiles/slurm).
    ``rule_dir`` restricts the search to one of those directories, e.g.
    ``"group_train_folds_train"``. Returns {job id: [log files]}.
    """
    root = Path(workdir, ".snakemake", "slurm_logs")
    if rule_dir:
        root = root / rule_dir
    found: dict[str, list[Path]] = {}
    if not root.is_dir():
        return found
    for log in sorted(root.rglob("*.log")):
        if log.stem.isdigit():
            found.setdefault(log.stem, []).append(log)
    return found
