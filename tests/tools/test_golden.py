from tools.golden import compare, first_difference, first_trace_difference


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


def _trace(outputs, grads, loss="0x1p-1", model_input="in"):
    return {"input": model_input, "loss": loss, "outputs": outputs, "grads": grads,
            "types": [f"T{i}" for i in range(len(outputs))]}


def test_trace_names_where_two_machines_part():
    base = _trace(["a", "b", "c"], ["ga", None, "gc"])
    assert first_trace_difference(base, _trace(["a", "b", "c"], ["ga", None, "gc"])) is None
    assert first_trace_difference(base, _trace(["a", "x", "y"], ["ga", None, "gc"])) == \
        "layer 1 (T1), forward"
    # Backward runs from the last layer: the highest-index gradient that differs is where.
    assert first_trace_difference(base, _trace(["a", "b", "c"], ["gx", None, "gy"])) == \
        "layer 2 (T2), backward"
    moved = _trace(["a", "b", "c"], ["ga", None, "gc"], model_input="other")
    assert "model input" in first_trace_difference(base, moved)
    assert "loss" in first_trace_difference(base, _trace(["a", "b", "c"], ["ga", None, "gc"],
                                                         loss="0x1p-2"))


def test_compare_reports_the_trace_and_a_recipe_change_does_not_fail():
    mine = dict(_record("intel", ["a", "b"]), trace=_trace(["a", "b"], ["g", "h"]))
    other = dict(_record("amd", ["x", "y"]), trace=_trace(["a", "z"], ["g", "h"]))
    status, lines = compare(mine, [other])
    assert status == 0 and "first differs at layer 1 (T1), forward" in lines[2]
    # This machine's record made under other kernel variables (an older recipe) is reported,
    # not failed: a recipe change moves every bit on purpose.
    old = _record("intel", ["x", "y"])
    old["machine"]["variables"] = {"MKL_CBWR": "AVX2,STRICT"}
    mine["machine"]["variables"] = {"MKL_CBWR": "COMPATIBLE"}
    status, lines = compare(mine, [old])
    assert status == 0 and lines[0].startswith("new machine: intel")
    assert "  recorded setting that differs: variables.MKL_CBWR: 'COMPATIBLE' vs 'AVX2,STRICT'" \
        in lines


def test_matching_fingerprints_also_compare_the_trace():
    # The trace is bits too: a record whose training agrees but whose layer trace does not
    # must say so (and fail against this machine's own record), not read as "same bits".
    mine = dict(_record("amd", ["a", "b"]), trace=_trace(["a", "b"], ["g", "h"]))
    same = dict(_record("intel", ["a", "b"]), trace=_trace(["a", "b"], ["g", "h"]))
    status, lines = compare(mine, [same])
    assert status == 0 and lines[-1] == \
        "same bits as recorded on intel [intel], and every layer of the trace agrees"
    parted = dict(_record("amd", ["a", "b"]), trace=_trace(["a", "z"], ["g", "h"]))
    status, lines = compare(mine, [parted])
    assert status == 1
    assert lines == ["same fingerprints as recorded on amd [amd], but the layer trace "
                     "first differs at layer 1 (T1), forward"]
