"""envs/*.yaml (for `--sdm conda`) must pin what pyproject.toml pins, and miss no runtime package."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from conftest import REPO

# Run the workflow, not its rules: they need not be in the rules' environment.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep", "pygments"}
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*", requirement)
        assert match, f"pyproject.toml dependency {requirement!r} is not pinned exactly (name==version)"
        pins[canonical(match[1])] = match[2]
    return pins


def env_pins(path) -> dict[str, tuple[str | None, str]]:
    """name -> (version or None, 'conda' or 'pip') for every package of a conda env file."""
    env = yaml.safe_load(path.read_text())
    pins = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for spec in entry.get("pip", []):
                match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:==\s*(\S+))?\s*", spec)
                assert match, f"{path.name}: pip entry {spec!r} is not name==version"
                pins[canonical(match[1])] = (match[2], "pip")
            continue
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:=?=\s*(\S+))?\s*", str(entry))
        assert match, f"{path.name}: conda entry {entry!r} is not 'name =version'"
        pins[canonical(match[1])] = (match[2], "conda")
    return pins


def test_there_is_an_env_and_every_rule_names_one():
    assert ENV_FILES, "envs/ holds no conda environment"
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    named = set(re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/([^"]+)"', rules))
    assert named, "no rule names an environment"
    assert named <= {p.name for p in ENV_FILES}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject(path):
    pins = pyproject_pins()
    env = env_pins(path)
    for name, (version, _) in env.items():
        if name in pins:
            assert version == pins[name], f"{path.name}: {name} {version} but pyproject.toml pins {pins[name]}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_has_every_runtime_dependency(path):
    env = env_pins(path)
    missing = sorted(set(pyproject_pins()) - WORKFLOW_ONLY - set(env))
    assert not missing, f"{path.name} lacks {missing} (pinned in pyproject.toml)"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_torch_comes_from_pip_in_the_env(path):
    env = env_pins(path)
    for name in ("torch", "torchvision"):
        assert env.get(name, (None, None))[1] == "pip", f"{path.name}: {name} must be under pip:"


def test_env_python_satisfies_requires_python():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    minimum = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", project["requires-python"])[1].split("."))
    for path in ENV_FILES:
        version = env_pins(path).get("python", (None, None))[0]
        assert version, f"{path.name} does not pin python"
        assert tuple(int(x) for x in version.split(".")[:2]) >= minimum[:2], path.name
