import subprocess
import sys

from tests.helpers import ROOT
from utils.base.host_memory import retain_freed_memory

# 64 MiB tensors allocated, written and freed, counting the page faults of the last ten of
# twenty, before and after the settings: glibc maps each afresh (every page faults again);
# the heap grows for the first few, then reuses what they left.
FAULTS = """
import resource, torch
from utils.base.host_memory import retain_freed_memory
def faults():
    for i in range(20):
        if i == 10:
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(16 * 2**20)
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
before = faults()
state = retain_freed_memory()
print(before, faults(), state)
"""


def _run(env_extra: dict) -> tuple[int, int, str]:
    env = {"PATH": "/usr/bin:/bin", **env_extra}
    out = subprocess.run([sys.executable, "-c", FAULTS], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout.split(maxsplit=2)
    return int(out[0]), int(out[1]), out[2].strip()


def test_freed_memory_is_reused_not_faulted_in_again():
    before, after, state = _run({})
    assert state == "glibc malloc: no mmap, heap trimmed above 2 GiB free"
    assert after * 3 < before, (before, after)


def test_a_users_allocator_choice_stands():
    before, after, state = _run({"MALLOC_MMAP_MAX_": "65536"})
    assert state == "as the environment chose (MALLOC_MMAP_MAX_=65536)"
    assert after * 3 > before, (before, after)  # nothing changed: still faulting


def test_the_state_is_decided_once():
    assert retain_freed_memory() == retain_freed_memory({"LD_PRELOAD": "libjemalloc.so"})


# Two forward and backward passes of yolov3-tiny at 224 px in fp32 and bf16 autocast, after a
# 256 MiB block of NaN was freed: with the settings the passes run in reused memory (that NaN,
# then the first pass's leftovers), without them in fresh zeroed pages.
STEP = """
import hashlib, torch
from models import Darknet
from utils.base.host_memory import retain_freed_memory
from utils.base.repro import configure_determinism
retain_freed_memory()
torch.full((64 * 2**20,), float("nan"))
configure_determinism(True, threads=2)
digest = hashlib.sha256()
for dtype in (torch.float32, torch.bfloat16):
    torch.manual_seed(0)
    model = Darknet("cfg/yolov3-tiny.cfg", num_classes=3, upsample="deterministic")
    model.to(memory_format=torch.channels_last).train()
    x = torch.rand(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = sum(p.float().square().mean() for p in model(x))
        loss.backward()
        for p in model.parameters():
            digest.update(p.grad.float().numpy().tobytes())
print(digest.hexdigest())
"""


def test_reused_memory_changes_no_bit_of_a_step():
    def grads(env: dict) -> str:
        return subprocess.run([sys.executable, "-c", STEP], cwd=ROOT, check=True, text=True,
                              env={"PATH": "/usr/bin:/bin", **env},
                              capture_output=True).stdout.strip()
    assert grads({}) == grads({"MALLOC_MMAP_MAX_": "65536"})
