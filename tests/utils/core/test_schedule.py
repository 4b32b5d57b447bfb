import pytest

from utils.core.schedule import cosine_factor, warmup_values

HYP = {"warmup_bias_lr": 0.1, "warmup_momentum": 0.8, "momentum": 0.937}


def test_cosine_runs_from_one_to_lrf():
    assert cosine_factor(0, 10, 0.2) == 1.0
    assert cosine_factor(5, 10, 0.2) == pytest.approx(0.6)
    assert cosine_factor(10, 10, 0.2) == pytest.approx(0.2)
    factors = [cosine_factor(e, 10, 0.2) for e in range(11)]
    assert factors == sorted(factors, reverse=True)


def test_warmup_rises_for_weights_and_falls_for_biases():
    assert warmup_values(0, 100, 0.01, is_bias=False, hyp=HYP) == (0.0, 0.8)
    assert warmup_values(0, 100, 0.01, is_bias=True, hyp=HYP) == (0.1, 0.8)
    lr, momentum = warmup_values(50, 100, 0.01, is_bias=False, hyp=HYP)
    assert lr == pytest.approx(0.005) and momentum == pytest.approx(0.8685)
    assert warmup_values(50, 100, 0.01, is_bias=True, hyp=HYP)[0] == pytest.approx(0.055)
    for is_bias in (False, True):
        assert warmup_values(100, 100, 0.01, is_bias, HYP) == pytest.approx((0.01, 0.937))
