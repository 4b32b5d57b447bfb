
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
from utils.base.errors import WeightsError

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


def _darknet_batch_norm(values, channels, x):
    """Darknet's normalize + scale_bias on x [C, ...] from a file's first conv block values."""
    bias, gamma, mean, var = (values[i * channels:(i + 1) * channels].astype(np.float64)
                              [:, None, None] for i in range(4))
    return gamma * (x - mean) / (np.sqrt(var) + 1e-6) + bias


def test_written_variance_means_what_darknet_computes(tmp_path):
    model = _random_model(0)
    with torch.no_grad():
        model.module_list[0].BatchNorm2d.running_var.copy_(
            torch.tensor([0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.1, 1.0, 5.0]))
    path = tmp_path / "m.weights"
    save_darknet_weights(model, path)
    written = np.frombuffer(path.read_bytes()[20:], np.float32)[24:32].astype(np.float64)
    ours = model.module_list[0].BatchNorm2d.running_var.double().numpy()
    np.testing.assert_allclose(np.sqrt(written) + 1e-6, np.sqrt(ours + 1e-4), rtol=1e-6)


def test_read_variance_computes_darknets_function(tmp_path):
    """A file's batch norm, darknet's formula in float64 against ours after loading, with
    variances from 0 (darknet divides by 1e-6) to 5."""
    model = _random_model(0)
    path = tmp_path / "m.weights"
    save_darknet_weights(model, path)
    data = bytearray(path.read_bytes())
    variances = np.array([0.0, 1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.5, 5.0], np.float32)
    data[20 + 24 * 4:20 + 32 * 4] = variances.tobytes()
    path.write_bytes(bytes(data))
    target = _random_model(1).eval()
    report = load_darknet_weights(target, path)
    assert report.folded == 2 and "2 batch-norm channels" in report.summary(path)
    x = torch.randn(1, 8, 4, 4, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = target.module_list[0].BatchNorm2d(x)[0].double().numpy()
    values = np.frombuffer(bytes(data[20:]), np.float32)
    expected = _darknet_batch_norm(values, 8, x[0].double().numpy())
    np.testing.assert_allclose(ours, expected, rtol=2e-6, atol=1e-5 * np.abs(expected).max())


OPENCV_PROBE = """
import sys
import cv2
import numpy as np
cfg, weights, inputs, out = sys.argv[1:]
net = cv2.dnn.readNetFromDarknet(cfg, weights)
net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
net.setInput(np.load(inputs))
names = ["leaky_1", "conv_10", "conv_17"]
np.savez(out, version=cv2.__version__, **dict(zip(names, net.forward(names))))
"""


def _opencv4_env() -> dict | None:
    """An environment whose python imports an OpenCV 4.x with the darknet importer (5.0
    dropped it): the system's, or one installed apart with ``pip install --target DIR
    opencv-python-headless==4.10.*`` and named by OPENCV4_TARGET=DIR."""
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    if os.environ.get("OPENCV4_TARGET"):
        env["PYTHONPATH"] = os.environ["OPENCV4_TARGET"]
    probe = "import cv2; assert hasattr(cv2.dnn, 'readNetFromDarknet')"
    ok = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode
    return env if ok == 0 else None


def test_opencv_darknet_importer_computes_what_we_compute(tmp_path):
    """An implementation we did not write reads our darknet file: layer 0's activations and both
    heads' raw outputs within 1e-4 of ours. Variances 0.05..0.2, where OpenCV's own placement of
    darknet's 1e-6 (inside the root: sqrt(var + 1e-6)) changes nothing at 1e-4, but the 1e-4
    that was ours did (divisors 2-5e-4 apart)."""
    import subprocess
    import sys
    env = _opencv4_env()
    if env is None:
        pytest.skip("no OpenCV 4.x with cv2.dnn.readNetFromDarknet: pip install --target DIR "
                    "'opencv-python-headless==4.10.*' and set OPENCV4_TARGET=DIR")
    model = _random_model(0).eval()
    with torch.no_grad():
        for block in model.module_list:
            if hasattr(block, "BatchNorm2d"):
                block.BatchNorm2d.running_var.uniform_(0.05, 0.2)
                block.BatchNorm2d.running_mean.uniform_(-0.5, 0.5)
                block.BatchNorm2d.weight.uniform_(0.1, 0.3)  # activations of order 1
            for conv in block.modules():
                if isinstance(conv, torch.nn.Conv2d):
                    conv.weight.normal_(0, (2 / conv.weight[0].numel()) ** 0.5)
    weights, inputs, out = tmp_path / "m.weights", tmp_path / "x.npy", tmp_path / "cv.npz"
    save_darknet_weights(model, weights)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    np.save(inputs, x.numpy())
    subprocess.run([sys.executable, "-c", OPENCV_PROBE, str(MICRO), str(weights), str(inputs),
                    str(out)], env=env, check=True, capture_output=True)
    theirs = np.load(out)
    assert str(theirs["version"]).startswith("4.")
    ours = {}
    hooks = [model.module_list[i].register_forward_hook(
        lambda _m, _i, output, name=name: ours.__setitem__(name, output.numpy()))
        for i, name in ((0, "leaky_1"), (10, "conv_10"), (17, "conv_17"))]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    for name, value in ours.items():
        np.testing.assert_allclose(value, theirs[name], rtol=0, atol=1e-4, err_msg=name)
