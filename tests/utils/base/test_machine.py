from utils.base.machine import cpu_info, kernel_variables, machine_key

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 8
flags\t\t: fpu sse4_2 avx2 fma avx512f amx_tile amx_bf16

processor\t: 1
vendor_id\t: SomethingElse
"""


def test_the_first_processor_and_its_kernel_flags():
    info = cpu_info(CPUINFO)
    assert info == {"vendor": "GenuineIntel", "model_name": "Intel(R) Xeon(R) Processor",
                    "family": "6", "model": "143", "stepping": "8",
                    "flags": ["avx2", "fma", "avx512f", "amx_tile", "amx_bf16"]}


def test_the_key_names_what_picks_kernels_not_the_model_name():
    record = {"cpu": {**cpu_info(CPUINFO), "caches": {"L2": "2048K", "L1d": "48K"}},
              "kernels": {"openmp_threads": 2}}
    key = machine_key(record)
    assert key == ("GenuineIntel | 6/143/8 | avx2+fma+avx512f+amx_tile+amx_bf16 | "
                   "L1d=48K,L2=2048K | threads=2")
    assert "Xeon" not in key


def test_steering_variables_are_recorded_set_or_not():
    found = kernel_variables({"MKL_CBWR": "AVX2", "PATH": "/bin"})
    assert found["MKL_CBWR"] == "AVX2" and found["ATEN_CPU_CAPABILITY"] is None
    assert "PATH" not in found
