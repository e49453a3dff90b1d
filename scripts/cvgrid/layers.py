"""Layers the registry's models are built from that need torch when they are defined
(cvgrid.models imports this module inside its functions, to stay torch-free itself)."""

from __future__ import annotations

import torch
from torch import nn


class NormalizedInput(nn.Module):
    """`model` fed (x - mean) / std per channel: a network whose pretrained weights expect
    normalised input, taking the [0, 1] batches every model of the registry takes. Being part
    of the model, the normalisation goes into model.pt and model.onnx with it."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
