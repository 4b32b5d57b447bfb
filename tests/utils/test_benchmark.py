import torch

from conftest import MICRO_CFG
from utils.benchmark import bench_inference, bench_training
from utils.data_config import load_data_config


def test_benchmark_cases_report_their_figures(tiny_data):
    data = load_data_config(tiny_data)
    device = torch.device("cpu")
    train = bench_training(str(MICRO_CFG), 64, 4, 2, repro=True, device=device, data=data,
                           workers=0)
    assert train["train_img_per_s"] > 0 and 0 <= train["data_share"] < 1
    assert train["peak_memory_gb"] > 0
    infer = bench_inference(str(MICRO_CFG), 64, 1, device, data.num_classes, repeats=2)
    # images/s and ms/image are two views of one measurement
    assert abs(infer["infer_b1_img_per_s"] * infer["infer_b1_ms_per_img"] / 1000 - 1) < 1e-9
