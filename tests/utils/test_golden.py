from utils.golden import compare, first_difference


def _record(key, fingerprints, capability="AVX2"):
    return {"mode": "portable", "key": key, "fingerprints": fingerprints,
            "machine": {"cpu": {"model_name": key}, "kernels": {"cpu_capability": capability}}}


def test_own_record_must_match():
    mine = _record("amd", ["a", "b", "c"])
    assert compare(mine, [_record("amd", ["a", "b", "c"])]) == (
        0, ["same bits as recorded on amd [amd]"])
    status, lines = compare(mine, [_record("amd", ["a", "x", "y"], capability="AVX512")])
    assert status == 1 and "DIFFERS from this machine" in lines[0] and "epoch 1" in lines[0]
    assert "recorded setting that differs: kernels.cpu_capability: 'AVX2' vs 'AVX512'" in lines[1]


def test_a_new_machine_is_reported_and_compared_without_failing():
    status, lines = compare(_record("intel", ["a", "b"]), [_record("amd", ["a", "z"])])
    assert status == 0 and lines[0].startswith("new machine: intel")
    assert "differs from amd's record [amd] from epoch 1" in lines[1]


def test_first_difference():
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference(["a", "b"], ["a", "c"]) == 1
    assert first_difference(["a"], ["a", "c"]) == 1
