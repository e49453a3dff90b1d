"""Snakemake's records of finished jobs (.snakemake/metadata/), brought up to date where only the
way a rule names its script changed.

The rules call `python <checkout>/scripts/x.py`. Until the script path became a resource
(common.smk, script_path), most rules passed it as a param: Snakemake records params and
compares them at every start, so a checkout at another path reran the data steps and, by their
new outputs, every training job. A record of that form is rewritten into the form the rule
writes now, so that this change itself reruns nothing; a record that differs in anything else
is left as it is (it reruns as it should).

Written for the record format of the pinned Snakemake (9.27.1, format version 6: one JSON file
per output path, params as a sorted list of reprs, the rule's shell template as "code"). The
file persistence backend only (the default; `--persistence-backend db` is not migrated).
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from pathlib import Path, PurePosixPath

# The record format this was written for (snakemake.persistence.RECORD_FORMAT_VERSION).
RECORD_FORMAT_VERSION = 6
OLD_SCRIPT_FIELD = "{params.script:q}"  # the script path as a param, recorded
NEW_SCRIPT_FIELD = "{resources.script:q}"  # the same path as a resource, not recorded


def is_old_script_param(entry, script_name: str) -> bool:
    """Whether a recorded param is the old script param of `script_name`: the repr of an absolute
    path <any checkout>/scripts/<script_name>."""
    if not isinstance(entry, str):
        return False
    try:
        value = ast.literal_eval(entry)
    except (ValueError, SyntaxError):
        return False
    if not isinstance(value, str) or repr(value) != entry:
        return False
    path = PurePosixPath(value)
    return path.is_absolute() and path.name == script_name and path.parent.name == "scripts"


def migrated_record(record: dict, template: str, script_name: str) -> dict | None:
    """The record in the form a rule with shell template `template` (its script a resource)
    writes now, or None where `record` is not of the old form: format version 6, its code the same
    template with the script as a param, and exactly one param that is the script's path."""
    old_template = template.replace(NEW_SCRIPT_FIELD, OLD_SCRIPT_FIELD)
    if old_template == template or record.get("record_format_version") != RECORD_FORMAT_VERSION:
        return None
    if record.get("code") != old_template:
        return None
    params = record.get("params")
    if not isinstance(params, list):
        return None
    scripts = [i for i, entry in enumerate(params) if is_old_script_param(entry, script_name)]
    if len(scripts) != 1:
        return None
    # Snakemake keeps params sorted: without one entry they still are.
    return record | {"code": template, "params": params[: scripts[0]] + params[scripts[0] + 1 :]}


def rewrite_record(path: Path, record: dict) -> None:
    """Replace a record at once (a reader never sees half a file), in Snakemake's JSON layout and
    with the file's permissions. The temporary file has a short name of its own: a record's name
    may be as long as a file name can be (cvgrid.io.atomic_path's would not fit beside it)."""
    mode = path.stat().st_mode & 0o7777
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".migrating-")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(record, out)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def old_form_records(metadata_dir: Path, rules: dict[str, tuple[str, str]]) -> list[tuple[Path, dict]]:
    """The records under `metadata_dir` (Snakemake's .snakemake/metadata) of the rules in `rules`
    ({rule name: (its shell template now, its script's file name)}) that hold the old script
    param, each with its form of now (migrated_record)."""
    found = []
    for folder, _, files in os.walk(metadata_dir):
        for name in files:
            path = Path(folder, name)
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue  # removed by a running Snakemake since the listing
            if OLD_SCRIPT_FIELD not in text:  # cheap: most records are not of the old form
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                continue  # being written by a running Snakemake: not ours to touch
            if isinstance(record, dict) and record.get("rule") in rules:
                new = migrated_record(record, *rules[record["rule"]])
                if new is not None:
                    found.append((path, new))
    return found


def held_by_a_run(state_dir: Path) -> bool:
    """Whether a Snakemake run holds the working directory whose .snakemake is `state_dir`: its
    lock files are in locks/ (a run that crashed leaves them until `snakemake --unlock`)."""
    locks = Path(state_dir, "locks")
    return locks.is_dir() and any(locks.iterdir())


def migrate_script_params(state_dir: Path | str, rules: dict[str, tuple[str, str]]) -> tuple[int, bool]:
    """Rewrite the records of the old form (old_form_records) in the working directory whose
    .snakemake is `state_dir`: the script param goes, the code becomes the template of now, and
    nothing else changes. Not while a run holds the directory: a run of an older checkout would
    read them as changed params and run those steps again. Returns (records of the old form,
    whether they were rewritten)."""
    found = old_form_records(Path(state_dir, "metadata"), rules)
    if not found or held_by_a_run(state_dir):
        return len(found), False
    for path, record in found:
        rewrite_record(path, record)
    return len(found), True
