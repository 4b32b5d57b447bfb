"""What a run records about itself: its folder, options, environment and input digests."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from models.darknet import anchored_cfg_text, cfg_anchors, scaled_cfg_text
from utils.base.atomic_io import atomic_write_text
from utils.base.device import device_name
from utils.base.errors import InputError
from utils.base.host_memory import allocator_state
from utils.base.machine import machine
from utils.data.hyp import digest_without_added_keys


def next_run_dir(project: str | Path, name: str) -> Path:
    """``project/name``, or ``name2``, ``name3``, ... when taken: a run never overwrites another."""
    project = Path(project)
    project.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100000):
        candidate = project / (name if n == 1 else f"{name}{n}")
        try:
            candidate.mkdir()  # atomic: two runs starting together cannot get the same folder
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {project}")


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_digest(paths: list[Path]) -> str:
    """One SHA-256 over the names (relative to their common folder) and bytes of ``paths``."""
    digest = hashlib.sha256()
    root = Path(os.path.commonpath([str(p) for p in paths])) if paths else Path(".")
    for p in sorted(paths):
        digest.update(str(p.relative_to(root) if p != root else p.name).encode() + b"\0")
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def git_commit() -> str | None:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def nccl_variables(environ=os.environ) -> dict[str, str]:
    """The NCCL_* and TORCH_NCCL_* variables set, by name."""
    return {k: environ[k] for k in sorted(environ) if k.startswith(("NCCL_", "TORCH_NCCL_"))}


def environment(device: torch.device) -> dict:
    """Versions, platform and device: the things that change bits between machines."""
    import cv2
    import numpy
    import torchvision
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        # NCCL's algorithm, protocol and channel choices set its reduction order under DDP
        # (empty, and so no setting in the drift report, when none is set).
        "nccl_variables": nccl_variables(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "machine": machine(device),
        "host_allocator": allocator_state(),
    }


def built_in_digest(data) -> str | None:
    """The built-in set's digest over its decoded pixels and label text (its DIGEST file,
    ``utils/data/shapes.py``), for a .data file that generates it (``data``: its DataConfig);
    None for other data. The file digests of :func:`input_digests` read the PNG bytes, which
    another OpenCV's encoder writes otherwise for the same pixels."""
    if data.generate != "shapes":
        return None
    try:
        return (Path(data.train).parent.parent / "DIGEST").read_text().strip()
    except OSError:
        return None


def input_digests(cfg_text: str, hyp_path: str | Path, train_set, val_set, data
                  ) -> dict[str, str]:
    """SHA-256 of what a run trains on: the cfg text, the hyp file, each set's images and
    labels (names and bytes), and the class names (``data``: the .data file's DataConfig).
    The hyp file's is taken without the lines of keys added since runs were first recorded
    (utils.data.hyp.ADDED_KEYS) while they are off: the digest it had before them, so a run, a
    resume or a seed group from then and one from now agree when their hyperparameters do."""
    return {"cfg": hashlib.sha256(cfg_text.encode()).hexdigest(),
            "hyp": digest_without_added_keys(hyp_path),
            "train": files_digest(train_set.files + train_set.label_files),
            "val": files_digest(val_set.files + val_set.label_files),
            "names": hashlib.sha256("\n".join(data.names).encode()).hexdigest()}


def write_run_records(run_dir: Path, plan, record: dict) -> None:
    """opt.yaml (the options), hyp.yaml (the hyperparameters) and repro.yaml (all of it, with
    the environment and input digests) in a new run folder; ``plan``: its RunPlan."""
    (run_dir / "weights").mkdir()
    atomic_write_text(run_dir / "opt.yaml", yaml.safe_dump(plan.record(), sort_keys=False))
    atomic_write_text(run_dir / "hyp.yaml", yaml.safe_dump(dict(plan.base_hyp), sort_keys=False))
    atomic_write_text(run_dir / "repro.yaml", yaml.safe_dump(record, sort_keys=False))


def check_inputs_unchanged(plan, ckpt: dict, digests: dict) -> list[str]:
    """Compare the inputs of a resumed run (``plan``: its RunPlan) with those its checkpoint
    recorded. Changed data breaks a --repro run's promise, so it is refused there; otherwise
    it is a loud warning. The cfg always comes from the checkpoint, so a changed cfg file is
    only reported."""
    notes = []
    cfg = plan.options.cfg
    if Path(cfg).is_file() and _cfg_changed(Path(cfg).read_text(), ckpt["cfg_text"], cfg,
                                            plan.base_hyp.get("scale_x_y", 1.0)):
        notes.append(f"{cfg} changed since the run started; the run continues with the cfg "
                     "stored in its checkpoint")
    saved = ckpt.get("digests") or {}
    changed = [k for k in ("hyp", "train", "val", "names")
               if k in saved and saved[k] != digests[k]]
    if changed:
        message = (f"the {' and '.join(changed)} files changed since the run started (digests "
                   "differ from the checkpoint's)")
        if plan.options.repro:
            raise InputError(f"--resume of a --repro run: {message}; restore them or start a "
                             "new run", plan.checkpoint)
        notes.append(message + "; the rest of the run trains on the new files")
    return notes


def _cfg_changed(text: str, saved: str, path, scale_x_y: float = 1.0) -> bool:
    """Whether the cfg file's ``text`` differs from the checkpoint's cfg by more than what the
    run wrote into its copy (which the file never had): the hyp's ``scale_x_y`` where a [yolo]
    layer set none, and the anchors autoanchor fitted."""
    if text == saved:
        return False
    try:
        if scale_x_y != 1.0:
            text = scaled_cfg_text(text, scale_x_y, path)[0]
        return anchored_cfg_text(text, cfg_anchors(saved, path)[0], path) != saved
    except (InputError, ValueError):  # another structure: changed in any case
        return True


def record_resume(run_dir: Path, epoch: int, env: dict, digests: dict) -> None:
    """Add this leg to repro.yaml with its environment and input digests, so a run resumed on
    another machine, software or data says so (the drift report reads them)."""
    path = run_dir / "repro.yaml"
    record = yaml.safe_load(path.read_text()) if path.is_file() else {}
    record.setdefault("resumes", []).append({"epoch": epoch, "environment": env,
                                             "digests": digests})
    record.pop("stopped_early", None)  # a run resumed past an early stop goes on
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False))


def record_stop(run_dir: Path, epoch: int, reason: str) -> None:
    """repro.yaml's ``stopped_early: {epoch, reason}``: the run ended before its last epoch by
    its own rule (--patience), not by an interrupt."""
    path = run_dir / "repro.yaml"
    record = yaml.safe_load(path.read_text()) if path.is_file() else {}
    record["stopped_early"] = {"epoch": epoch, "reason": reason}
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False))
