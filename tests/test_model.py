"""build_model: the seed's initial weights, built once per process and copied after."""

from __future__ import annotations

import re

import pytest
import segmentation_models_pytorch as smp
import torch

from losscmp import model as model_module
from losscmp.errors import ParameterError
from losscmp.model import MODEL_PRESETS, build_model, clear_model_cache

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture
def unet_calls(monkeypatch):
    """A cold cache, and the number of times smp's U-Net has been constructed since."""
    calls = []
    real_unet = smp.Unet

    def counted_unet(*args, **kwargs):
        calls.append(kwargs.get("encoder_weights"))
        return real_unet(*args, **kwargs)

    clear_model_cache()
    monkeypatch.setattr(smp, "Unet", counted_unet)
    yield calls
    clear_model_cache()  # nothing built under the patch outlives the test


def _tensors(model) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _assert_identical(model, other) -> None:
    assert str(model) == str(other)  # the same modules, unused stages dropped alike
    tensors, others = _tensors(model), _tensors(other)
    assert list(tensors) == list(others)
    for name, tensor in tensors.items():
        twin = others[name]
        assert tensor.dtype == twin.dtype and tensor.stride() == twin.stride(), name
        assert tensor.requires_grad == twin.requires_grad, name
        assert torch.equal(tensor, twin), name


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_a_second_build_is_a_fresh_build_bit_for_bit(unet_calls, preset):
    first = build_model(MODEL_PRESETS[preset], 1, None, seed=5)
    second = build_model(MODEL_PRESETS[preset], 1, None, seed=5)
    assert len(unet_calls) == 1  # the second drew nothing
    clear_model_cache()
    fresh = build_model(MODEL_PRESETS[preset], 1, None, seed=5)
    assert len(unet_calls) == 2
    _assert_identical(second, fresh)
    _assert_identical(first, fresh)
    assert len(model_module._INITIAL_MODELS) == 1


def test_two_builds_share_no_tensor(unet_calls):
    first = build_model(TINY, 1, None, seed=0)
    second = build_model(TINY, 1, None, seed=0)
    kept = next(iter(model_module._INITIAL_MODELS.values()))
    pointers = [{t.data_ptr() for t in _tensors(m).values()} for m in (first, second, kept)]
    assert not pointers[0] & pointers[1] and not pointers[0] & pointers[2]
    assert not pointers[1] & pointers[2]
    with torch.no_grad():  # a trial trains its weights in place
        for tensor in _tensors(first).values():
            tensor.add_(1)
    third = build_model(TINY, 1, None, seed=0)
    _assert_identical(second, third)
    weight = "segmentation_head.0.weight"
    assert torch.equal(_tensors(first)[weight], _tensors(third)[weight] + 1)


def test_a_build_leaves_the_global_random_state_alone(unet_calls):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_model(TINY, 1, None, seed=0)  # drawn
    assert torch.equal(torch.get_rng_state(), state)
    build_model(TINY, 1, None, seed=0)  # copied
    assert torch.equal(torch.get_rng_state(), state)
    assert len(unet_calls) == 1


def test_what_decides_the_weights_is_the_key(unet_calls):
    binary = build_model(TINY, 1, None, seed=0)
    other_seed = build_model(TINY, 1, None, seed=1)
    three_classes = build_model(TINY, 3, None, seed=0)
    assert len(unet_calls) == 3
    head = "segmentation_head.0.weight"
    assert _tensors(three_classes)[head].shape[0] == 3
    assert not torch.equal(_tensors(binary)[head], _tensors(other_seed)[head])


def test_the_kept_models_stay_few_and_the_latest_stay(unet_calls):
    kept = model_module.INITIAL_MODELS_KEPT
    for seed in range(kept + 3):
        build_model(TINY, 1, None, seed=seed)
    assert len(model_module._INITIAL_MODELS) == kept
    assert [key[-1] for key in model_module._INITIAL_MODELS] == list(range(3, kept + 3))
    build_model(TINY, 1, None, seed=kept + 2)  # the latest seed: kept
    assert len(unet_calls) == kept + 3
    build_model(TINY, 1, None, seed=0)  # the first: long gone, drawn again
    assert len(unet_calls) == kept + 4 and len(model_module._INITIAL_MODELS) == kept


def test_pretrained_weights_are_kept_apart_and_a_failed_load_is_not_kept(unet_calls, monkeypatch):
    real_unet = smp.Unet
    asked = []

    def hub_unet(*args, encoder_weights=None, **kwargs):
        asked.append(encoder_weights)
        if encoder_weights == "offline":
            raise OSError("We couldn't connect to the Hub")
        model = real_unet(*args, encoder_weights=None, **kwargs)
        if encoder_weights == "ones":  # as if loaded: every encoder weight 1
            with torch.no_grad():
                for weight in model.encoder.parameters():
                    weight.fill_(1)
        return model

    monkeypatch.setattr(smp, "Unet", hub_unet)
    monkeypatch.setattr(model_module, "_unreachable_hub_host", lambda: None)  # online
    for _ in range(2):
        with pytest.raises(ParameterError, match="could not load 'offline' encoder weights"):
            build_model(TINY, 1, "offline", seed=0)
    assert not model_module._INITIAL_MODELS
    loaded = [build_model(TINY, 1, "ones", seed=0) for _ in range(2)]
    drawn = build_model(TINY, 1, None, seed=0)
    # each failure tried anew, from the cache and then online; a success tried once
    assert asked == ["offline"] * 4 + ["ones", None]
    _assert_identical(loaded[0], loaded[1])
    assert all(bool((weight == 1).all()) for weight in loaded[1].encoder.parameters())
    assert not torch.equal(loaded[1].encoder.conv1.weight, drawn.encoder.conv1.weight)


def test_pretrained_weights_without_network_are_refused_at_once(offline_hub):
    """The hub's client retried the connection five times, waiting 1 to 8 s in between:
    ~25 s of silence per file before the error."""
    message = (
        "could not load 'imagenet' encoder weights for the tiny model: huggingface.co "
        f"cannot be reached (no internet access?); they are downloaded once into {offline_hub}"
    )
    with pytest.raises(ParameterError, match=re.escape(message)):
        build_model(TINY, 1, "imagenet", seed=0)


def test_pretrained_weights_in_the_hub_cache_need_no_network(offline_hub):
    """Downloaded once, then read from the cache offline, whatever the network."""
    from safetensors.torch import save_file

    settings = smp.encoders.encoders["resnet18"]["pretrained_settings"]["imagenet"]
    snapshot = offline_hub / "models--smp-hub--resnet18.imagenet" / "snapshots"
    snapshot = snapshot / settings["revision"]
    snapshot.mkdir(parents=True)
    encoder = smp.encoders.get_encoder("resnet18", weights=None)
    stored = {name: torch.full_like(tensor, 0.25) for name, tensor in encoder.state_dict().items()}
    save_file(stored, snapshot / "model.safetensors")
    (snapshot / "config.json").write_text("{}", encoding="utf-8")

    loaded = build_model(TINY, 1, "imagenet", seed=0)
    assert torch.equal(loaded.encoder.conv1.weight, stored["conv1.weight"])
    assert torch.equal(loaded.encoder.layer2[0].bn1.running_var, stored["layer2.0.bn1.running_var"])
    drawn = build_model(TINY, 1, None, seed=0)  # the decoder: drawn from the seed alike
    assert torch.equal(
        loaded.decoder.blocks[0].conv1[0].weight, drawn.decoder.blocks[0].conv1[0].weight
    )
