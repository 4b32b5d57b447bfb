import torch

from utils.data.inputs import to_model_input


def test_every_pixel_value_keeps_its_cpu_bits():
    # The tensor divisor must not change the CPU's bits (the default run's fingerprints).
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    got = to_model_input(pixels, torch.device("cpu"))
    assert torch.equal(got, pixels.float() / 255)
    assert got.is_contiguous(memory_format=torch.channels_last)
