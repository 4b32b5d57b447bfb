import pytest

from utils.datasets import EpochBatchSampler


def _batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_order_is_a_function_of_seed_and_epoch():
    a = EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=0)
    b = EpochBatchSampler(10, 4, shuffle=True, drop_last=False, seed=0)
    assert _batches(a, 3) == _batches(b, 3)          # same (seed, epoch): same batches
    assert _batches(a, 3) != _batches(a, 4)          # another epoch: another order
    assert _batches(a, 3) != _batches(EpochBatchSampler(10, 4, True, False, seed=1), 3)
    flat = [i for batch in _batches(a, 3) for i in batch]
    assert sorted(flat) == [(3, i) for i in range(10)]  # every sample once, tagged by epoch
    assert [len(b) for b in _batches(a, 3)] == [4, 4, 2] and len(a) == 3


def test_drop_last_and_no_shuffle():
    sampler = EpochBatchSampler(10, 4, shuffle=False, drop_last=True, seed=0)
    assert _batches(sampler, 0) == [[(0, i) for i in range(4)], [(0, i) for i in range(4, 8)]]
    assert len(sampler) == 2


def test_ranks_split_each_global_batch():
    whole = _batches(EpochBatchSampler(16, 8, True, True, seed=5), 2)
    shares = [_batches(EpochBatchSampler(16, 8, True, True, seed=5, rank=r, world_size=2), 2)
              for r in (0, 1)]
    for step, batch in enumerate(whole):
        assert shares[0][step] + shares[1][step] == batch
    with pytest.raises(ValueError, match="does not split"):
        EpochBatchSampler(16, 7, True, True, seed=0, world_size=2)
