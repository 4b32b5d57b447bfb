import pytest
import torch

import train
from models.darknet_weights import read_darknet_file
from tests.helpers import run_train
from tools import convert_weights
from utils.base.errors import InputError
from utils.engine.checkpoint import load_checkpoint, load_inference_model, model_from_checkpoint

pytestmark = pytest.mark.slow


def _convert(*argv):
    return convert_weights.main(convert_weights.get_args_parser().parse_args(list(map(str, argv))))


def test_pt_to_darknet_and_back_keeps_the_ema_weights(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "1")
    ckpt_path = run / "weights" / "last.pt"
    darknet = _convert(ckpt_path, tmp_path / "model.weights")
    ckpt = load_checkpoint(ckpt_path)
    cfg = tmp_path / "micro.cfg"  # 4 classes, as the run (the shapes set) had
    cfg.write_text(ckpt["cfg_text"])
    back = _convert(darknet, tmp_path / "back.pt", "--cfg", cfg)
    original = model_from_checkpoint(ckpt, ckpt_path)  # the EMA weights
    converted, meta = load_inference_model(back)
    for (name, a), b in zip(original.state_dict().items(), converted.state_dict().values()):
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(a, b), name
    assert meta["args"] is None  # weights only: nothing to resume
    with pytest.raises(InputError, match="holds weights only"):
        train.main(train.get_args_parser().parse_args(["--resume", str(back)]))


def test_a_cut_is_the_first_layers(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--epochs", "1")
    whole = _convert(run / "weights" / "last.pt", tmp_path / "whole.weights", "--raw")
    cut = _convert(run / "weights" / "last.pt", tmp_path / "micro.conv.8", "--raw")
    assert whole.read_bytes().startswith(cut.read_bytes())
    assert len(read_darknet_file(cut).values) < len(read_darknet_file(whole).values)


def test_a_darknet_source_needs_a_cfg(tmp_path):
    path = tmp_path / "x.weights"
    path.write_bytes(b"\0" * 24)
    with pytest.raises(InputError, match="needs --cfg"):
        _convert(path, tmp_path / "y.pt")


def test_a_converted_model_of_another_class_count_writes_its_cfg_beside(tmp_path):
    from models import Darknet
    from tests.helpers import MICRO_CFG
    from utils.base.atomic_io import atomic_torch_save
    from utils.engine.checkpoint import weights_checkpoint
    cfg80 = tmp_path / "micro80.cfg"  # the cfg a 4-class run started from
    cfg80.write_text(MICRO_CFG.read_text().replace("classes=4", "classes=80")
                     .replace("filters=27", "filters=255"))
    model = Darknet(cfg80, num_classes=4)
    atomic_torch_save(weights_checkpoint(model), tmp_path / "m.pt")
    out = _convert(tmp_path / "m.pt", tmp_path / "m.weights")
    cfg = tmp_path / "m.cfg"
    assert cfg.is_file() and "classes=4" in cfg.read_text()
    back, _ = load_inference_model(out, cfg)
    assert back.num_classes == 4 and back.adaptations == []
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(a, b), name
    # A cfg of that name with other content is never overwritten.
    cfg.write_text("something else")
    with pytest.raises(InputError, match="m.cfg"):
        _convert(tmp_path / "m.pt", tmp_path / "m.weights")
    assert cfg.read_text() == "something else"
