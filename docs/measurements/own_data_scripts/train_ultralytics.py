"""How own_data.md ran the ultralytics package: its yolov3-tiny.yaml on a project written by
tools.convert_labels (its train.txt / val.txt lists), 2 threads, then its validation of last.pt
with save_json (the boxes tools.score_detections scores). Run in a separate virtual environment
with ``pip install ultralytics==8.4.190``; the package is not a dependency of this project.

    YOLO_OFFLINE=1 python train_ultralytics.py PROJECT_DIR EPOCHS SEED OUT_DIR
"""
import json
import sys
import time
from pathlib import Path

import torch
import ultralytics
import ultralytics.utils.torch_utils as torch_utils
from ultralytics import YOLO

THREADS = 2


def main(project: Path, epochs: int, seed: int, out: Path) -> dict:
    # The package sets torch's threads to cpu_count - 1 when it picks the device: 1 on 2 cores.
    torch_utils.NUM_THREADS = THREADS
    names = [n for n in (project / f"{project.name}.names").read_text().splitlines() if n.strip()]
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data.yaml"
    data.write_text(json.dumps({"path": str(project), "train": str(project / "train.txt"),
                                "val": str(project / "val.txt"),
                                "names": dict(enumerate(names))}))
    threads = []
    model = YOLO("yolov3-tiny.yaml")
    model.add_callback("on_train_epoch_start", lambda _: threads.append(torch.get_num_threads()))
    start = time.time()
    model.train(data=str(data), imgsz=320, epochs=epochs, batch=16, device="cpu", seed=seed,
                deterministic=True, workers=0, val=False, plots=False, amp=False,
                project=str(out), name="train", exist_ok=True, pretrained=False, verbose=False)
    train_s = time.time() - start
    val = YOLO(str(out / "train" / "weights" / "last.pt")).val(
        data=str(data), imgsz=320, batch=16, device="cpu", save_json=True, plots=False,
        project=str(out), name="val", exist_ok=True, verbose=False)
    info = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
            "threads_at_epoch_start": sorted(set(threads)), "train_s": train_s,
            "epochs": epochs, "seed": seed, "own_map50": float(val.box.map50),
            "own_map": float(val.box.map)}
    (out / "info.json").write_text(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))
