import pytest
import torch

from models import Darknet
from models.darknet import count_flops
from tests.helpers import MICRO_CFG
from tools.benchmark import bench_inference, bench_training
from utils.data.data_config import load_data_config
from utils.data.hyp import load_hyp


def test_flops_are_counted_conv_by_conv(tmp_path):
    cfg = tmp_path / "two.cfg"
    cfg.write_text("[net]\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\n"
                   "stride=2\npad=1\nactivation=leaky\n[convolutional]\nfilters=18\nsize=1\n"
                   "stride=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=4,4,8,8,16,16\n"
                   "classes=1\n")
    # 3x3x3 -> 8 at 32x32 (stride 2 of 64), then 1x1x8 -> 18 at 32x32; 2 FLOPs a multiply-add.
    expected = 2 * (27 * 8 * 32 * 32) + 2 * (8 * 18 * 32 * 32)
    assert count_flops(Darknet(cfg), 64) == expected


def test_training_rate_times_train_pys_own_step(tiny_data):
    data = load_data_config(tiny_data)
    device = torch.device("cpu")
    train = bench_training(str(MICRO_CFG), 64, 4, 2, ("--repro",), "cpu", data)
    # One warm-up epoch of 2 batches, then 2 timed batches of 4.
    assert train["timed_images"] == 8
    assert train["train_img_per_s"] == pytest.approx(8 / train["timed_seconds"])
    flops = count_flops(Darknet(MICRO_CFG, num_classes=4), 64) * 3
    assert train["model_gflops_per_s"] == pytest.approx(flops * train["train_img_per_s"] / 1e9)
    assert 0 <= train["data_share"] <= 1 and train["peak_memory_gb"] > 0
    # The step train.py runs on this data: its hyp file's optimizer, the mode's precision.
    assert train["optimizer"].upper() == load_hyp()["optimizer"].upper() == "ADAM"
    assert train["precision"] == "fp32" and train["workers"] == 0
    infer = bench_inference(str(MICRO_CFG), 64, 1, device, data.num_classes, repeats=2)
    assert infer["infer_b1_img_per_s"] > 0


def test_on_a_gpu_every_mode_gets_a_loader_worker_per_core(monkeypatch):
    # train.py's own choice (0 under --repro, up to 8) would time the loader on a fast GPU.
    from tools.benchmark import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers(None, torch.device("cuda", 0)) == 16
    assert default_workers(3, torch.device("cuda", 0)) == 3
    assert default_workers(None, torch.device("cpu")) is None  # the plan's choice per mode


def test_more_steps_than_the_set_holds_are_stepped_and_counted(tiny_data):
    """16 images are 4 batches of 4: 6 timed steps run over two epochs of the subset, and
    the rate counts the images that were stepped (it used to count steps x batch whatever
    the subset held, 1.6x too many on a GPU's 50 steps of the built-in set)."""
    data = load_data_config(tiny_data)
    train = bench_training(str(MICRO_CFG), 64, 4, 6, ("--repro",), "cpu", data)
    assert train["timed_steps"] == 6 and train["timed_images"] == 24
    assert train["train_img_per_s"] == pytest.approx(24 / train["timed_seconds"])


def test_a_repro_case_gives_the_next_case_the_processs_threads(tiny_data):
    """A --repro plan pins 2 threads; the ordinary case after it must run at the process's own
    count, not inherit the pin."""
    data = load_data_config(tiny_data)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = bench_training(str(MICRO_CFG), 64, 4, 1, ("--repro",), "cpu", data)
        assert train["threads"] == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_options_the_table_would_drop_are_refused():
    from tools.benchmark import get_args_parser, main
    from utils.base.errors import InputError
    with pytest.raises(InputError, match="--modes chooses --roofline's modes"):
        main(get_args_parser().parse_args(["--modes", "default"]))
    with pytest.raises(InputError, match="--threads 0: must be at least 1"):
        main(get_args_parser().parse_args(["--threads", "0"]))
    with pytest.raises(InputError, match="drop --compile or --roofline"):
        main(get_args_parser().parse_args(["--roofline", "--compile"]))


def test_compile_reaches_every_mode_but_portable():
    from tools.benchmark import EPOCH_MODES, _train_flags, get_args_parser
    args = get_args_parser().parse_args(["--compile", "--threads", "1"])
    flags = {name: _train_flags(mode_flags, args) for name, mode_flags in EPOCH_MODES}
    assert all("--compile" in f for name, f in flags.items() if name != "portable fp32")
    assert "--compile" not in flags["portable fp32"]
    assert all(f[f.index("--threads") + 1] == "1" for f in flags.values())
