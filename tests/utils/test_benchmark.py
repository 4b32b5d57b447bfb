import pytest
import torch

from models import Darknet
from models.darknet import count_flops
from tests.helpers import MICRO_CFG
from utils.benchmark import bench_inference, bench_training
from utils.data_config import load_data_config
from utils.hyp import load_hyp


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
    assert train["optimizer"] == load_hyp()["optimizer"].upper() == "SGD"
    assert train["precision"] == "fp32" and train["workers"] == 0
    infer = bench_inference(str(MICRO_CFG), 64, 1, device, data.num_classes, repeats=2)
    assert infer["infer_b1_img_per_s"] > 0


def test_on_a_gpu_every_mode_gets_a_loader_worker_per_core(monkeypatch):
    # train.py's own choice (0 under --repro, up to 8) would time the loader on a fast GPU.
    from utils.benchmark import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers(None, torch.device("cuda", 0)) == 16
    assert default_workers(3, torch.device("cuda", 0)) == 3
    assert default_workers(None, torch.device("cpu")) is None  # the plan's choice per mode
