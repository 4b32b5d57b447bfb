import pytest

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
    assert lines[1] == ("recorded under another recipe than this run's, intel (MKL_CBWR "
                        "'AVX2,STRICT' vs 'COMPATIBLE'): its bits are no evidence either way")
    # So is a record of the first --portable recipe (2-thread bits only, unnumbered): the
    # thread-count-free recipe computes other bits by design.
    mine["recipe"], old["machine"]["variables"] = 2, {"MKL_CBWR": "COMPATIBLE"}
    status, lines = compare(mine, [old])
    assert status == 0 and "(recipe 1 vs 2)" in lines[1]


def test_a_trace_that_changes_with_the_thread_count_fails():
    mine = dict(_record("amd", ["a"]), trace=_trace(["a"], ["g"]), recipe=2,
                threads_check={1: "layer 0 (T0), backward"})
    status, lines = compare(mine, [dict(mine)])
    assert status == 1 and lines[0] == ("THREAD COUNT CHANGES THE BITS: the trace at 1 "
                                        "thread(s) first differs from 2 threads' at layer 0 "
                                        "(T0), backward")
    mine["threads_check"] = {1: None}
    status, lines = compare(mine, [dict(mine)])
    assert status == 0 and lines[0] == "the trace at 1 thread(s) is the same as at 2, every layer"


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


def _gpu_record(fingerprints, name="NVIDIA H100 80GB HBM3", capability="9.0",
                torch="2.11.0+cu130", cuda="13.0", cudnn=91200, cpu="AMD EPYC"):
    """A GPU golden record as tools.golden makes it, on a faked machine description."""
    from utils.base.machine import machine_key
    machine = {"cpu": {"model_name": cpu, "vendor": cpu}, "kernels": {"openmp_threads": 2},
               "gpu": {"name": name, "compute_capability": capability, "cuda": cuda,
                       "cudnn": cudnn}}
    versions = {"torch": torch, "python": "3.12.3", "numpy": "2.3.0"}
    return {"mode": "repro", "fingerprints": fingerprints, "machine": machine,
            "versions": versions, "key": machine_key(machine, versions)}


def test_a_gpu_record_is_keyed_by_the_gpu_and_its_software_not_the_host():
    record = _gpu_record(["a"])
    assert record["key"] == "NVIDIA H100 80GB HBM3 | sm_9.0 | torch 2.11.0+cu130 | CUDA 13.0 | " \
                            "cuDNN 91200"
    # Another host CPU under the same GPU and software: the same key, and its bits must match.
    other_host = _gpu_record(["a"], cpu="Intel Xeon")
    assert other_host["key"] == record["key"]
    assert compare(record, [other_host])[0] == 0
    assert compare(_gpu_record(["b"], cpu="Intel Xeon"), [record])[0] == 1


@pytest.mark.parametrize("changed, said", [
    ({"torch": "2.14.1+cu130"}, "torch 2.11.0+cu130 vs 2.14.1+cu130"),
    ({"cuda": "12.8"}, "CUDA 13.0 vs 12.8"),
    ({"cudnn": 91000}, "cuDNN 91200 vs 91000"),
])
def test_the_same_gpu_under_other_software_is_not_comparable_not_a_failure(changed, said):
    recorded = _gpu_record(["x", "y"], **changed)
    status, lines = compare(_gpu_record(["a", "b"]), [recorded])
    assert status == 0
    assert lines[0].startswith("new machine: NVIDIA H100 80GB HBM3 | sm_9.0")
    assert lines[1] == (f"another torch/CUDA/cuDNN than the record of {recorded['key']} "
                        f"({said}): not comparable")
    assert len(lines) == 2


def test_another_gpu_model_is_compared_without_failing():
    status, lines = compare(_gpu_record(["a", "b"]),
                            [_gpu_record(["a", "z"], name="NVIDIA H200", capability="9.0")])
    assert status == 0 and "differs from NVIDIA H200's record" in lines[1]
    assert "from epoch 1" in lines[1]
