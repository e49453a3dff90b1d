"""Models by name: the protocol's parameter counts, the output shape, and unknown names."""

from __future__ import annotations

import pytest
import torch

from cvgrid.models import MODELS, build_model, count_trainable_parameters, get_spec


@pytest.mark.parametrize(("name", "expected"), [("model_a", 457_226), ("model_b", 2_620_170)])
def test_trainable_parameters_match_the_protocol(name, expected):
    model = build_model(name, 10)
    assert count_trainable_parameters(model) == expected
    # Counted independently of the library helper.
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_model_maps_a_batch_at_its_input_size_to_logits(name):
    torch.manual_seed(0)
    spec = get_spec(name)
    model = build_model(name, 10).eval()
    x = torch.rand(2, 3, spec.input_size, spec.input_size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()


def test_number_of_classes_sets_the_output_width():
    model = build_model("model_a", 3).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 100, 100)).shape == (1, 3)


def test_input_sizes_are_the_protocols():
    assert get_spec("model_a").input_size == 100
    assert get_spec("model_b").input_size == 128


def test_unknown_model_name_is_named_in_the_error():
    with pytest.raises(ValueError, match="model_zz"):
        build_model("model_zz", 10)
    with pytest.raises(ValueError, match="model_zz"):
        get_spec("model_zz")


def test_reference_config_names_only_registered_models():
    import yaml

    from conftest import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert set(config["grid"]["model"]) <= set(MODELS)
    assert set(config["models"]) <= set(MODELS)


def test_model_a_blocks_compute_the_keras_order_conv_elu_pool_batchnorm():
    """The blocks pool before the ELU (cheaper); ELU is increasing, so the values and the
    gradients are those of the protocol's Conv | ELU | MaxPool | BatchNorm."""
    from torch import nn

    torch.manual_seed(0)
    model = build_model("model_a", 10).train()
    keras_order = nn.Sequential(*[
        nn.Sequential(block[0], nn.ELU(), nn.MaxPool2d(3), block[3]) for block in list(model)[:3]
    ], *list(model)[3:]).train()  # the same modules, so the same weights
    x = torch.rand(4, 3, 100, 100, dtype=torch.float64)
    model.double()
    torch.manual_seed(1)  # dropout draws the same mask in both
    ours = model(x)
    ours.sum().backward()
    ours_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.manual_seed(1)
    theirs = keras_order(x)
    theirs.sum().backward()
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    for a, p in zip(ours_grads, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=0, atol=1e-10)
