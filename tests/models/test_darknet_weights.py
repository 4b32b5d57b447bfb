from pathlib import Path

import numpy as np
import pytest
import torch

from models import Darknet
from models.darknet_weights import load_darknet_weights, save_darknet_weights
from utils.errors import WeightsError

MICRO = Path(__file__).resolve().parents[1] / "data" / "micro.cfg"


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
    assert load_darknet_weights(target, path) == 1234
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
