from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from models import Darknet, count_parameters, model_summary
from models.layers import RepeatUpsample
from tests.helpers import MICRO_CFG
from utils.base.errors import CfgError

CFG = Path(__file__).resolve().parents[2] / "cfg"
MICRO = MICRO_CFG


@pytest.mark.parametrize("name, layers, params", [
    # Darknet's own counts for the 80-class models.
    ("yolov3", 107, 61_949_149),
    ("yolov3-tiny", 24, 8_852_366),
    ("yolov3-spp", 114, 62_998_749),
])
def test_parameter_counts_match_darknet(name, layers, params):
    model = Darknet(CFG / f"{name}.cfg")
    assert len(model.module_list) == layers
    assert count_parameters(model) == params
    assert model.num_classes == 80


def test_yolov3_tiny_output_shapes_and_strides():
    model = Darknet(CFG / "yolov3-tiny.cfg").train()
    outputs = model(torch.zeros(1, 3, 256, 256))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 8, 8, 85), (1, 3, 16, 16, 85)]
    assert model.strides() == [32, 16]
    model.eval()
    detections, raw = model(torch.zeros(1, 3, 256, 256))
    assert detections.shape == (1, 3 * (64 + 256), 85)


def test_class_count_adapts_heads_and_says_so():
    model = Darknet(CFG / "yolov3.cfg", num_classes=4)
    assert model.num_classes == 4
    assert len(model.adaptations) == 3
    assert "classes 80 -> 4" in model.adaptations[0] and "255 -> 27" in model.adaptations[0]
    assert model.module_list[81].Conv2d.out_channels == 27


def test_summary_mentions_flops_and_upsample_kind():
    model = Darknet(CFG / "yolov3-tiny.cfg", upsample="deterministic")
    text = model_summary(model, 416)
    assert "24 layers" in text and "8,852,366 parameters" in text
    assert "5.56 GFLOPs" in text  # Darknet reports 5.56 BFLOPs for yolov3-tiny at 416
    assert "1 of them deterministic" in text
    assert not any(isinstance(m, nn.Upsample) for m in model.modules())
    assert sum(isinstance(m, RepeatUpsample) for m in model.modules()) == 1


def test_fuse_keeps_detections():
    torch.manual_seed(0)
    model = Darknet(MICRO).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 64, 64)
    before, _ = model(x)
    after, _ = model.fuse()(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def _micro_with(tmp_path, old, new):
    text = MICRO.read_text()
    assert old in text
    path = tmp_path / "bad.cfg"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("filters=8\n", "", "missing the key 'filters'"),
    ("layers = -1, 7", "layers = -1, 40", "points at layer 40"),
    ("from=-3", "from=-9", "points at layer -4"),
    ("mask = 3,4,5", "mask = 3,4,9", "names anchors [9]"),
    ("filters=27\nactivation=linear\n\n[yolo]\nmask = 3,4,5",
     "filters=30\nactivation=linear\n\n[yolo]\nmask = 3,4,5", "needs filters=27"),
    ("filters=16\nsize=3\nstride=1", "filters=12\nsize=3\nstride=1", "[shortcut] adds layer 2"),
    ("activation=leaky", "activation=gelu", "activation='gelu' is not supported"),
    ("filters=8\n", "filters=eight\n", "is not an integer"),
    ("[upsample]\nstride=2", "[upsample]\nstride=0", "an upsample factor must be an integer"),
    ("[upsample]\nstride=2", "[upsample]\nstride=1.5", "stride='1.5' is not an integer"),
    ("mask = 3,4,5", "mask = 3,4.5,5", "is not a list of integers"),
    ("anchors = 6,6, 10,12", "anchors = 6,-6, 10,12", "must be a positive number"),
])
def test_bad_cfg_names_line(tmp_path, old, new, message):
    path = _micro_with(tmp_path, old, new)
    with pytest.raises(CfgError) as err:
        Darknet(path)
    assert message in str(err.value)
    assert str(err.value).startswith(str(path) + ":")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["[convolutional]", "[route]", "[shortcut]", "[yolo]", "[maxpool]",
                                 "[upsample]", "filters=8", "filters=27", "size=3", "size=1",
                                 "stride=2", "layers=-2", "layers=-1,3", "from=-2", "mask=0,1,2",
                                 "mask=5", "anchors=1,2,3,4,5,6", "classes=4", "pad=1",
                                 "activation=leaky", "batch_normalize=1", "garbage", "x=1"]),
                max_size=25))
def test_model_builder_fails_only_with_its_own_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "f.cfg"
    path.write_text("[net]\nchannels=3\n" + "\n".join(lines) + "\n")
    try:
        Darknet(path)
    except CfgError as err:
        assert str(err).startswith(str(path))


def test_fractional_anchors_are_kept(tmp_path):
    path = tmp_path / "fractional.cfg"
    path.write_text(MICRO.read_text().replace("anchors = 6,6, 10,12, 14,10, 18,20, 26,22, 30,30",
                                              "anchors = 6.5,6.25, 10,12, 14,10, 18,20, 26,22, "
                                              "30.75,30"))
    model = Darknet(path)
    small, large = model.anchors()[1], model.anchors()[0]  # masks 0,1,2 and 3,4,5
    assert small[0].tolist() == [6.5, 6.25] and large[2].tolist() == [30.75, 30.0]


def test_yolo_layer_decodes_bf16_outputs_in_fp32():
    # Decoding in bf16 rounds box coordinates by 1-2 px and scores by about 0.004.
    from models.layers import YOLOLayer
    torch.manual_seed(0)
    layer = YOLOLayer(torch.tensor([[10.0, 13.0], [33.0, 23.0]]), num_classes=3, stride=32).eval()
    conv_output = (torch.randn(2, 2 * 8, 7, 9) * 3).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as evaluation runs a bf16 model
        detections, raw = layer(conv_output)
    expected, _ = layer(conv_output.float())
    assert detections.dtype == torch.float32
    torch.testing.assert_close(detections, expected, rtol=0, atol=0)
    assert raw.dtype == torch.bfloat16  # the raw outputs are the head's own, as in training
    layer.train()
    assert layer(conv_output).dtype == torch.bfloat16  # training: untouched, the loss's input


def test_adapted_cfg_text_builds_the_adapted_model_as_it_is():
    from models.darknet import adapted_cfg_text
    text = (CFG / "yolov3-tiny.cfg").read_text()
    adapted = adapted_cfg_text(text, 4, "yolov3-tiny.cfg")
    assert len(adapted.splitlines()) == len(text.splitlines())  # layout and comments kept
    rebuilt = Darknet("adapted.cfg", cfg_text=adapted)
    assert rebuilt.num_classes == 4 and rebuilt.adaptations == []
    expected = Darknet(CFG / "yolov3-tiny.cfg", num_classes=4)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in expected.state_dict().items()}
    assert adapted_cfg_text(text, 80, "yolov3-tiny.cfg") == text


def test_stride_one_max_pool_ignores_the_border_as_darknet_does():
    """Darknet's maxpool skips positions outside the input (yolov3-tiny's size=2 stride=1 pool);
    zero padding made the last row and column max(x, 0), 0.15 on a head output against OpenCV."""
    pool = Darknet(MICRO_CFG).module_list[9]
    x = -torch.rand(1, 2, 3, 3) - 0.1
    expected = torch.stack([torch.stack([x[0, :, i:i + 2, j:j + 2].amax((1, 2))
                                         for j in range(3)], -1) for i in range(3)], -2)
    torch.testing.assert_close(pool(x)[0], expected)


def test_summary_of_a_one_class_model_says_1_class():
    from models import Darknet, model_summary
    from tests.helpers import MICRO_CFG
    text = model_summary(Darknet(MICRO_CFG, num_classes=1), 64)
    assert "1 class," in text and "1 classes" not in text


def test_cfg_anchors_are_the_entries_the_masks_use():
    from models.darknet import cfg_anchors
    slots, layers = cfg_anchors((CFG / "yolov3-tiny.cfg").read_text(), "yolov3-tiny.cfg")
    np.testing.assert_array_equal(slots, [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169],
                                          [344, 319]])
    assert [list(i) for i in layers] == [[3, 4, 5], [0, 1, 2]]
    model = Darknet(CFG / "yolov3-tiny.cfg")
    for indices, anchors in zip(layers, model.anchors()):
        np.testing.assert_array_equal(slots[indices], anchors.numpy())


def test_anchored_cfg_text_changes_only_the_anchors_lines():
    from models.darknet import anchored_cfg_text, cfg_anchors
    text = (CFG / "yolov3-tiny.cfg").read_text().replace("mask = 0,1,2", "mask = 0,1,2  # small")
    slots, layers = cfg_anchors(text)
    new = slots * 0.5 + 0.123  # written with 2 decimals: 5.123 -> 5.12
    rewritten = anchored_cfg_text(text, new, "tiny.cfg")
    changed = [(a, b) for a, b in zip(text.splitlines(), rewritten.splitlines()) if a != b]
    assert len(text.splitlines()) == len(rewritten.splitlines()) and len(changed) == 2
    assert all(a.startswith("anchors = ") and b.startswith("anchors=5.12,7.12,  11.62,13.62")
               for a, b in changed)
    assert "mask = 0,1,2  # small" in rewritten  # masks and comments stay
    model = Darknet("tiny.cfg", cfg_text=rewritten)
    for indices, anchors in zip(layers, model.anchors()):
        torch.testing.assert_close(anchors, torch.tensor(np.round(new[indices], 2)).float())
    assert anchored_cfg_text(text, slots, "tiny.cfg") == text  # the same anchors: as it was
    with pytest.raises(ValueError, match="5 anchors for the cfg's 6 used anchors"):
        anchored_cfg_text(text, new[:5], "tiny.cfg")


def test_anchor_slots_of_overlapping_masks_and_of_separate_lists():
    """darknet's own yolov3-tiny names anchor 3 in both masks and never anchor 0; a cfg may also
    give each layer its own list: each used entry is one slot, written back where it was."""
    from models.darknet import anchored_cfg_text, cfg_anchors
    text = (CFG / "yolov3-tiny.cfg").read_text().replace("mask = 0,1,2", "mask = 1,2,3")
    slots, layers = cfg_anchors(text)
    assert len(slots) == 5 and [list(i) for i in layers] == [[2, 3, 4], [0, 1, 2]]
    rewritten = anchored_cfg_text(text, np.arange(1, 11, dtype=float).reshape(5, 2))
    assert rewritten.count("anchors=10,14,  1,2,  3,4,  5,6,  7,8,  9,10") == 2  # 0 unused
    line = "anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319"
    own = (CFG / "yolov3-tiny.cfg").read_text().replace(line, "anchors = 1,1, 2,2, 3,3, 4,4, "
                                                        "5,5, 6,6", 1)  # the first layer's
    slots, layers = cfg_anchors(own)
    np.testing.assert_array_equal(slots, [[4, 4], [5, 5], [6, 6], [10, 14], [23, 27], [37, 58]])
    assert [list(i) for i in layers] == [[0, 1, 2], [3, 4, 5]]
    rewritten = anchored_cfg_text(own, slots + 1)
    assert "anchors=1,1,  2,2,  3,3,  5,5,  6,6,  7,7\n" in rewritten
    assert "anchors=11,15,  24,28,  38,59,  81,82,  135,169,  344,319\n" in rewritten


def _with_scale_x_y(value: str) -> str:
    return MICRO_CFG.read_text().replace("[yolo]\n", f"[yolo]\nscale_x_y={value}\n")


def test_scale_x_y_decodes_the_centre_as_darknet_and_is_checked():
    from utils.base.errors import CfgError
    plain = Darknet(str(MICRO_CFG), num_classes=4).eval()
    scaled = Darknet(str(MICRO_CFG), num_classes=4, cfg_text=_with_scale_x_y("2.0")).eval()
    assert plain.xy_scales() == [1.0, 1.0] and scaled.xy_scales() == [2.0, 2.0]
    scaled.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        (a, raw), (b, _) = plain(x), scaled(x)
    head = plain.heads[0]
    cells = raw[0][..., :2].sigmoid()  # the first head's centres, as YOLOv3 decodes them
    n = cells[0].numel() // 2
    offset_a = a[0, :n, :2].view_as(cells[0]) / head.stride
    offset_b = b[0, :n, :2].view_as(cells[0]) / head.stride
    # The same grid corner under both: 2 s - 0.5 against s.
    torch.testing.assert_close(offset_b - (2 * cells[0] - 0.5), offset_a - cells[0])
    torch.testing.assert_close(a[..., 2:], b[..., 2:])  # sizes and scores unchanged
    with pytest.raises(CfgError, match=r"scale_x_y=0.5: expected a number of at least 1"):
        Darknet(str(MICRO_CFG), num_classes=4, cfg_text=_with_scale_x_y("0.5"))
