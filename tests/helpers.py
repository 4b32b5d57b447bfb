"""What the tests share: the micro model, a .data file writer, and train.py run in-process."""
from __future__ import annotations

import re
from pathlib import Path

import train
from utils.data.shapes import CLASS_NAMES
from utils.engine.results import NOT_COMPARED, read_results

ROOT = Path(__file__).resolve().parent.parent
MICRO_CFG = Path(__file__).resolve().parent / "data" / "micro.cfg"


def process_alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to read its status."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def hyp_with(source: Path, target: Path, **values) -> Path:
    """``source``'s hyp file written to ``target`` with the given keys set to ``values``
    (whatever the file had), so a test does not depend on the shipped file's numbers."""
    text = source.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key}:\s*[^\s#]+", f"{key}: {value}", text, flags=re.M)
        assert count == 1, key
    target.write_text(text)
    return target


def write_data_file(folder: Path, train: str = "images/train", valid: str = "images/val") -> Path:
    (folder / "tiny.names").write_text("\n".join(CLASS_NAMES) + "\n")
    data = folder / "tiny.data"
    data.write_text(f"classes={len(CLASS_NAMES)}\ntrain={train}\nvalid={valid}\n"
                    "names=tiny.names\n")
    return data


def train_args(data: Path, project: Path, *extra: str):
    argv = ["--cfg", str(MICRO_CFG), "--data", str(data), "--img-size", "64", "--batch-size", "4",
            "--epochs", "2", "--project", str(project), "--quiet", *extra]
    return train.get_args_parser().parse_args(argv)


def run_train(data: Path, project: Path, *extra: str) -> Path:
    return train.main(train_args(data, project, *extra))


def comparable(run: Path) -> list:
    """Every results.txt value but the memory column, and the fingerprint, per epoch: what two
    runs that reproduce each other must share."""
    return [({k: v for k, v in r.values.items() if k not in NOT_COMPARED}, r.fingerprint)
            for r in read_results(run)]


MICRO_ANCHORS = "anchors = 6,6, 10,12, 14,10, 18,20, 26,22, 30,30"
# Thin anchors on the squarish shapes of the built-in set: almost no label matches one, so a new
# run fits its anchors (autoanchor).
POOR_ANCHORS = "anchors = 60,2, 62,2, 64,3, 2,60, 2,62, 3,64"


def poor_anchors_cfg(folder: Path) -> Path:
    """tests/data/micro.cfg with :data:`POOR_ANCHORS`, written into ``folder``."""
    text = MICRO_CFG.read_text()
    assert text.count(MICRO_ANCHORS) == 2
    path = folder / "poor_anchors.cfg"
    path.write_text(text.replace(MICRO_ANCHORS, POOR_ANCHORS))
    return path


def _gloo_process(work, rank: int, port: int, queue) -> None:
    """One of :func:`in_two_gloo_processes`'s processes: joins the group, runs ``work``."""
    import os

    import torch
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        queue.put((rank, work(rank)))
    finally:
        torch.distributed.destroy_process_group()


def in_two_gloo_processes(work, timeout: float = 120) -> list:
    """``work(rank)`` (a module-level function: it is pickled by name) in 2 spawned processes
    of one gloo group on the loopback address, without torchrun; their results, rank 0 first."""
    import multiprocessing
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_gloo_process, args=(work, r, port, queue))
               for r in range(2)]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=timeout) for _ in workers)
    for w in workers:
        w.join(60)
    return [results[0], results[1]]
