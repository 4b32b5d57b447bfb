
import numpy as np
import pytest
import torch

from models import Darknet
from models.darknet_weights import (
    cutoff_from_name,
    is_darknet_weights,
    load_darknet_weights,
    save_darknet_weights,
)
from tests.helpers import MICRO_CFG
from utils.errors import WeightsError

MICRO = MICRO_CFG


def _random_model(seed):
    torch.manual_seed(seed)
    model = Darknet(MICRO)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point and not name.endswith("anchors"):
                tensor.uniform_(0.1, 1.0)
    return model


def test_save_then_load_is_exact(tmp_path):
    source, target = _random_model(0), _random_model(1)
    path = tmp_path / "m.weights"
    save_darknet_weights(source, path, seen=1234)
    assert load_darknet_weights(target, path).seen == 1234
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        if name.endswith("num_batches_tracked"):
            continue
        assert torch.equal(a, b), name


def test_file_layout_is_darknets(tmp_path):
    model = _random_model(0)
    path = tmp_path / "m.weights"
    save_darknet_weights(model, path)
    data = path.read_bytes()
    assert np.frombuffer(data[:12], np.int32).tolist() == [0, 2, 0]
    first = model.module_list[0]
    values = np.frombuffer(data[20:], np.float32)
    # First conv with batch norm: bias, weight, running mean, running var, then conv weights.
    np.testing.assert_array_equal(values[:8], first.BatchNorm2d.bias.detach().numpy())
    np.testing.assert_array_equal(values[8:16], first.BatchNorm2d.weight.detach().numpy())
    np.testing.assert_array_equal(values[32:32 + 8 * 27],
                                  first.Conv2d.weight.detach().numpy().ravel())


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "m.weights"
    save_darknet_weights(_random_model(0), path)
    path.write_bytes(path.read_bytes()[:-400])
    with pytest.raises(WeightsError, match="truncated"):
        load_darknet_weights(_random_model(1), path)


def test_weights_for_another_cfg_are_refused(tmp_path):
    path = tmp_path / "m.weights"
    save_darknet_weights(_random_model(0), path)
    path.write_bytes(path.read_bytes() + b"\0" * 400)
    with pytest.raises(WeightsError, match="left over"):
        load_darknet_weights(_random_model(1), path)


def test_wrong_kind_of_file(tmp_path):
    path = tmp_path / "m.weights"
    path.write_text("hello")
    with pytest.raises(WeightsError):
        load_darknet_weights(_random_model(1), path)


@pytest.mark.parametrize("size", [12, 16, 17, 19])
def test_short_file_is_refused_with_a_message(tmp_path, size):
    path = tmp_path / "m.weights"
    path.write_bytes(np.array([0, 2, 0, 0, 0], dtype=np.int32).tobytes()[:size])
    with pytest.raises(WeightsError, match="too short"):
        load_darknet_weights(_random_model(1), path)


def test_files_are_recognised_by_content(tmp_path):
    model = _random_model(0)
    darknet = tmp_path / "darknet53.conv.74"
    save_darknet_weights(model, darknet)
    torch.save({"a": 1}, tmp_path / "ckpt.weights")
    assert is_darknet_weights(darknet)
    assert not is_darknet_weights(tmp_path / "ckpt.weights")
    assert cutoff_from_name(darknet) == 74 and cutoff_from_name("yolov3-tiny.conv.15") == 15
    assert cutoff_from_name("yolov3.weights") is None and cutoff_from_name("best.pt") is None


def _assert_layers_equal(a, b, layers, equal=True):
    for name, tensor in a.state_dict().items():
        index = int(name.split(".")[1]) if name.startswith("module_list.") else -1
        if 0 <= index < layers and not name.endswith("num_batches_tracked"):
            assert torch.equal(tensor, b.state_dict()[name]) == equal, name


@pytest.mark.parametrize("name", ["micro.conv.7", "backbone.bin"])
def test_backbone_cut_loads_its_layers_only(tmp_path, name):
    """A cut named as darknet names it, or under any name (its layer count then comes from its
    size), loads layers 0..N-1 and leaves the rest as they were."""
    source, target = _random_model(0), _random_model(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    path = tmp_path / name
    save_darknet_weights(source, path, cutoff=7)
    report = load_darknet_weights(target, path)
    assert report.layers == 7 and report.convs == 5
    assert "loaded layers 0..6 (5 convolutions)" in report.summary(path)
    _assert_layers_equal(source, target, 7)
    for key, value in target.state_dict().items():
        if int(key.split(".")[1]) >= 7:
            assert torch.equal(value, before[key]), key


def test_cut_bytes_are_a_prefix_of_the_whole_file(tmp_path):
    """What darknet's partial writes: the same header and the first layers' values."""
    model = _random_model(0)
    whole, cut = tmp_path / "whole.weights", tmp_path / "m.conv.7"
    save_darknet_weights(model, whole)
    save_darknet_weights(model, cut, cutoff=7)
    assert whole.read_bytes().startswith(cut.read_bytes())
    assert len(cut.read_bytes()) < len(whole.read_bytes())
