"""Pretrained weights: download one file once and check its hash; load it into a model's
backbone and check that it fits.

The download follows torch.hub's convention, which torchvision's weights use
(`weights.get_state_dict(check_hash=True)`): the file name in the URL is
`NAME-HASH.EXT`, where HASH is the first hex digits (8 or more) of the file's SHA256, found
with the regex `-([a-f0-9]*)\\.` (torch.hub.HASH_REGEX). E.g. MobileNetV2's ImageNet
weights are https://download.pytorch.org/models/mobilenet_v2-b0353104.pth.

Nothing here imports torch until a file is loaded: the fetch rule runs on a login node, and
the workflow plans its inputs (cvgrid.plan) from the registry's `Pretrained` entries.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

# torch.hub.HASH_REGEX, used by torch.hub.load_state_dict_from_url(check_hash=True).
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
MIN_HASH_DIGITS = 8  # torch.hub accepts any length, even none; so short a prefix checks nothing
CHUNK = 1 << 20
# The input normalisation of torchvision's ImageNet weights (their transforms().mean / .std).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(RuntimeError):
    """A weights file that cannot be fetched, is not a checkpoint, or does not fit the model."""


@dataclass(frozen=True)
class Pretrained:
    """What a registry entry says about its pretrained weights.

    weights: a torchvision weights enum member, as `torchvision.models.get_weight` names it,
        e.g. "MobileNet_V2_Weights.IMAGENET1K_V1".
    url: that member's URL, where the file comes from, written out so that planning the
        workflow needs no torch import (tests/test_weights.py checks it against torchvision).
    backbone: the submodule of the built model that the file fills, as a dotted path for
        `model.get_submodule` ("" = the whole model).
    source_prefix: the part of the file that is used: keys that start with it, prefix removed
        (e.g. "features." for a MobileNetV2 file, whose classifier is not used).
    skip: key prefixes, relative to the backbone, that the file does not fill (a new head,
        e.g. ResNet's "fc."); the file's keys under them are ignored.
    mean, std: the per-channel normalisation of the inputs the weights were trained on (the
        weights' own transforms; torchvision's ImageNet weights all use these). A model that
        starts from the file normalises its [0, 1] input with them (cvgrid.models.build_model).
    """

    weights: str
    url: str
    backbone: str = ""
    source_prefix: str = ""
    skip: tuple[str, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


# --------------------------------------------------------------------------- download

def file_name(url: str) -> str:
    """The file name at the end of `url` (what torch.hub names its cached copy)."""
    name = PurePosixPath(unquote(urlparse(url).path)).name
    if not name:
        raise WeightsError(f"the URL {url} does not end in a file name")
    return name


def hash_prefix(name: str) -> str:
    """The SHA256 prefix that a torch.hub style file name carries, e.g. b0353104 for
    mobilenet_v2-b0353104.pth."""
    match = HASH_REGEX.search(name)
    if match is None or len(match.group(1)) < MIN_HASH_DIGITS:
        raise WeightsError(
            f"the file name {name!r} carries no SHA256 prefix of {MIN_HASH_DIGITS}+ hex digits"
            " (torch.hub's NAME-HASH.EXT convention); pass the expected hash explicitly"
        )
    return match.group(1)


def torchvision_url(weights: str) -> str:
    """The download URL of a torchvision weights enum member, e.g.
    "MobileNet_V2_Weights.IMAGENET1K_V1" (imports torchvision)."""
    from torchvision.models import get_weight

    try:
        return get_weight(weights).url
    except (KeyError, ValueError, AttributeError) as error:
        raise WeightsError(f"torchvision has no weights {weights!r}: {error}") from None


def missing_message(url: str, dest: str | Path, expected: str, reason: str, config_hint: str = "") -> str:
    hint = f" or set {config_hint} in the config to the path of a copy you already have" if config_hint else ""
    return (
        f"cannot download the pretrained weights {url} ({reason}).\n"
        f"Training needs this file, and training jobs never download it. Either run this step where\n"
        f"there is internet (e.g. on the cluster's login node: snakemake runs it there, it is a local\n"
        f"rule), or download it yourself:\n"
        f"    {url}\n"
        f"check that its SHA256 (sha256sum) begins with {expected}, and put it at\n"
        f"    {os.path.abspath(dest)}\n"
        f"{('then run the workflow again;' + hint) if hint else 'then run the workflow again.'}"
    )


def fetch(url: str, dest: str | Path, expected_hash: str | None = None, config_hint: str = "") -> Path:
    """Download `url` to `dest` and check that its SHA256 starts with `expected_hash` (by
    default the prefix in the URL's file name). The file appears at `dest` only when it is
    whole and correct; on any failure nothing is left behind."""
    dest = Path(dest)
    expected = (expected_hash or hash_prefix(file_name(url))).lower()
    if not re.fullmatch(r"[0-9a-f]+", expected):
        raise WeightsError(f"expected hash {expected!r} is not hexadecimal")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial{os.getpid()}")
    digest = hashlib.sha256()
    try:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "cvgrid"})
            with urllib.request.urlopen(request, timeout=60) as response, open(tmp, "wb") as out:
                while block := response.read(CHUNK):
                    out.write(block)
                    digest.update(block)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise WeightsError(missing_message(url, dest, expected, str(reason), config_hint)) from error
        actual = digest.hexdigest()
        if not actual.startswith(expected):
            raise WeightsError(
                f"the file downloaded from {url} has SHA256 {actual}, which does not begin with"
                f" {expected} as its name promises: a broken or different file; nothing was kept"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- load

def read_state_dict(path: str | Path) -> dict:
    """The state dict in `path`, loaded with weights_only=True (no code runs)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling raises many kinds
        raise WeightsError(
            f"weights file {path} is not a PyTorch checkpoint that loads with weights_only=True"
            f" ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"weights file {path} holds a {type(state).__name__}, not a state dict"
            " (a mapping of parameter names to tensors, as torch.save(model.state_dict()) writes)"
        )
    return state


def _skipped(key: str, skip: tuple[str, ...]) -> bool:
    return any(key.startswith(prefix) for prefix in skip)


def _optional(key: str) -> bool:
    # BatchNorm fills a missing counter itself (files saved before torch 0.4.1 lack it).
    return key.endswith("num_batches_tracked")


def load_backbone(model, pretrained: Pretrained, path: str | Path) -> None:
    """Fill `model`'s backbone from the weights file `path`, after checking that the file's
    keys and shapes are exactly the backbone's (less `skip`)."""
    state = read_state_dict(path)
    source = {
        key[len(pretrained.source_prefix):]: value
        for key, value in state.items()
        if key.startswith(pretrained.source_prefix)
    }
    source = {k: v for k, v in source.items() if not _skipped(k, pretrained.skip)}
    backbone = model.get_submodule(pretrained.backbone)
    target = {k: v for k, v in backbone.state_dict().items() if not _skipped(k, pretrained.skip)}
    where = f"the backbone of {pretrained.weights}" + (
        f" (file keys {pretrained.source_prefix}*)" if pretrained.source_prefix else ""
    )
    for key, value in target.items():
        if key not in source:
            if _optional(key):
                continue
            raise WeightsError(
                f"weights file {path} does not fit {where}: it has no "
                f"{pretrained.source_prefix}{key} (first missing key; the file has {len(state)} keys)"
            )
        if tuple(source[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"weights file {path} does not fit {where}: {pretrained.source_prefix}{key} has shape"
                f" {tuple(source[key].shape)}, the model needs {tuple(value.shape)}"
            )
    unexpected = [key for key in source if key not in target]
    if unexpected:
        raise WeightsError(
            f"weights file {path} does not fit {where}: it has {pretrained.source_prefix}{unexpected[0]},"
            f" which the model does not (first of {len(unexpected)} unexpected keys)"
        )
    result = backbone.load_state_dict(source, strict=False)
    left = [k for k in result.missing_keys if not (_skipped(k, pretrained.skip) or _optional(k))]
    if left or result.unexpected_keys:  # cannot happen after the checks above
        raise WeightsError(f"weights file {path}: missing {left}, unexpected {result.unexpected_keys}")
