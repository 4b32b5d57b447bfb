import torch

from utils.core.loss import _unique_max, build_targets, class_targets, yolo_loss

HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "anchor_t": 4.0,
       "iou_type": "giou"}


def test_target_lands_in_centre_cell_of_matching_anchor():
    # One 64x64 image, 8x8 grid (stride 8); a box centred at (20, 44) px, 16x16 px.
    targets = torch.tensor([[0.0, 2.0, 20 / 64, 44 / 64, 16 / 64, 16 / 64]])
    anchors = [torch.tensor([[2.0, 2.0], [20.0, 20.0]])]  # grid units: 16 px and 160 px
    (t,) = build_targets(targets, anchors, [(8, 8)], anchor_t=4.0)
    assert t.anchor.tolist() == [0]             # 160 px anchor is 10x too big
    assert (t.gy.item(), t.gx.item()) == (5, 2)  # 44 / 8 = 5.5, 20 / 8 = 2.5
    torch.testing.assert_close(t.box, torch.tensor([[0.5, 0.5, 2.0, 2.0]]))
    assert t.cls.tolist() == [2] and t.image.tolist() == [0]


def test_unique_max_keeps_largest_per_index():
    index = torch.tensor([5, 3, 5, 5, 3, 7])
    values = torch.tensor([0.2, 0.9, 0.7, 0.1, 0.4, 0.3])
    unique, kept = _unique_max(index, values)
    assert unique.tolist() == [3, 5, 7]
    torch.testing.assert_close(kept, torch.tensor([0.9, 0.7, 0.3]))


def _perfect_prediction():
    """A [1, 1, 4, 4, 6] prediction that puts a box exactly on the single target."""
    p = torch.full((1, 1, 4, 4, 6), -20.0)
    p[0, 0, 1, 2, :2] = 0.0          # sigmoid(0) = 0.5: the cell centre
    p[0, 0, 1, 2, 2:4] = 0.0         # exp(0) * anchor = anchor
    p[0, 0, 1, 2, 4] = 20.0          # objectness ~1
    p[0, 0, 1, 2, 5] = 20.0
    target = torch.tensor([[0.0, 0.0, 2.5 / 4, 1.5 / 4, 1 / 4, 1 / 4]])  # cell (y=1, x=2)
    return p, target


def test_loss_is_near_zero_for_a_perfect_prediction():
    p, target = _perfect_prediction()
    loss, parts = yolo_loss([p], target, [torch.tensor([[16.0, 16.0]])], [16], HYP)
    assert parts[0].item() < 1e-6   # box: GIoU 1
    assert parts[1].item() < 1e-6   # objectness target = IoU = 1
    assert parts[2].item() == 0.0   # one class: no class loss
    torch.testing.assert_close(loss, parts[3] * 1)


def test_loss_grows_when_box_is_off():
    p, target = _perfect_prediction()
    p[0, 0, 1, 2, 2] = 1.0  # width e times too large
    _, parts = yolo_loss([p], target, [torch.tensor([[16.0, 16.0]])], [16], HYP)
    assert parts[0].item() > 0.01
    assert parts[1].item() > 0.01  # the objectness target drops to the IoU


def test_loss_scales_with_batch_and_backprops():
    p = torch.zeros(2, 3, 4, 4, 9, requires_grad=True)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [1, 3, 0.2, 0.7, 0.2, 0.4]])
    loss, parts = yolo_loss([p], targets, [torch.tensor([[8.0, 8.0], [16.0, 16.0], [32.0, 32.0]])],
                            [16], HYP)
    torch.testing.assert_close(loss, parts[3] * 2)
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_a_loss_call_builds_no_tensor_from_host_values():
    """On a GPU each tensor made from Python values is a host-to-device copy: after the first
    call (which makes the BCE weights once) the loss makes only one."""
    from torch.profiler import ProfilerActivity, profile
    torch.manual_seed(0)
    preds = [torch.randn(2, 3, 4, 4, 7, requires_grad=True)]
    targets = torch.tensor([[0.0, 1.0, 0.3, 0.6, 0.2, 0.2], [1.0, 0.0, 0.7, 0.2, 0.4, 0.3]])
    anchors, strides = [torch.tensor([[10.0, 14.0], [23.0, 27.0], [37.0, 58.0]])], [16]
    yolo_loss(preds, targets, anchors, strides, HYP)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        yolo_loss(preds, targets, anchors, strides, HYP)
    made = sum(e.count for e in prof.key_averages() if e.key == "aten::lift_fresh")
    assert made <= 1  # the 1.0 written into the class targets; before: 2 scales + 2 weights more


def _old_class_targets(logits, cls, label_smoothing=0.0):
    """The class targets as yolo_loss built them before label smoothing existed."""
    target = torch.zeros_like(logits)
    target[torch.arange(len(cls), device=logits.device), cls] = 1.0
    return target


def _loss_and_grad(monkeypatch=None, **kwargs):
    torch.manual_seed(3)
    p = torch.randn(2, 3, 4, 4, 9, requires_grad=True)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [1, 3, 0.2, 0.7, 0.2, 0.4],
                            [1, 0, 0.6, 0.4, 0.5, 0.2]])
    loss, parts = yolo_loss([p], targets, [torch.tensor([[8.0, 8.0], [16.0, 16.0],
                                                         [32.0, 32.0]])], [16], HYP, **kwargs)
    loss.backward()
    return loss.detach(), parts, p.grad


def test_label_smoothing_zero_is_the_old_loss_bit_for_bit(monkeypatch):
    import utils.core.loss as loss_module
    with monkeypatch.context() as patch:
        patch.setattr(loss_module, "class_targets", _old_class_targets)
        old = _loss_and_grad()
    for new in (_loss_and_grad(), _loss_and_grad(label_smoothing=0.0)):
        assert all(torch.equal(a, b) for a, b in zip(old, new))
    assert old[1][2] > 0  # the class loss took part
    smoothed = _loss_and_grad(label_smoothing=0.1)
    assert not torch.equal(smoothed[1][2], old[1][2]) and torch.equal(smoothed[1][:2], old[1][:2])


def test_class_targets_follow_yolov5s_smooth_bce():
    logits = torch.zeros(2, 4)
    cls = torch.tensor([1, 3])
    assert torch.equal(class_targets(logits, cls), _old_class_targets(logits, cls))
    smoothed = class_targets(logits, cls, 0.1)
    expected = torch.full((2, 4), 0.05)
    expected[0, 1] = expected[1, 3] = 0.95
    torch.testing.assert_close(smoothed, expected, rtol=0, atol=0)


def test_fixed_order_loss_is_the_same_loss():
    """--portable's loss means (utils.core.reduction) give the loss torch's fused means give,
    to rounding, on a grid larger than one row of the fixed-order sum (16 x 3 x 32 x 32
    objectness scores), and the same value to the bit on a small one."""
    g = torch.Generator().manual_seed(0)
    anchors = [torch.tensor([[8.0, 8.0], [16.0, 16.0], [32.0, 32.0]])]
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [5, 3, 0.2, 0.7, 0.2, 0.4]])
    for grid, exact in ((32, False), (4, True)):
        p = torch.randn(16, 3, grid, grid, 9, generator=g, requires_grad=True)
        fused, fused_parts = yolo_loss([p], targets, anchors, [8], HYP)
        fixed, fixed_parts = yolo_loss([p], targets, anchors, [8], HYP, fixed_order=True)
        if exact:
            assert torch.equal(fused_parts, fixed_parts)
        torch.testing.assert_close(fixed, fused, rtol=1e-6, atol=0)
        fused_grad, = torch.autograd.grad(fused, p)
        fixed_grad, = torch.autograd.grad(fixed, p)
        torch.testing.assert_close(fixed_grad, fused_grad, rtol=1e-5, atol=1e-9)


def test_neighbour_cells_take_the_target_where_the_decode_reaches_it():
    """yolov5's assignment, on a layer whose scale_x_y is 2: the centre's cell, and the
    neighbour nearer the centre in x and in y, each with the true centre relative to its own
    cell (between -0.5 and 1.5 cells, what 2 sigmoid - 0.5 spans)."""
    targets = torch.tensor([[0.0, 1.0, 2.3 / 8, 5.7 / 8, 2 / 8, 2 / 8],   # left and down
                            [0.0, 0.0, 0.3 / 8, 7.6 / 8, 2 / 8, 2 / 8]])  # at the corner
    anchors = [torch.tensor([[2.0, 2.0]])]
    (alone,) = build_targets(targets, anchors, [(8, 8)], 4.0)
    (t,) = build_targets(targets, anchors, [(8, 8)], 4.0, neighbours=[True])
    assert list(zip(alone.gx.tolist(), alone.gy.tolist())) == [(2, 5), (0, 7)]
    # The second target's neighbours would be off the grid (x < 1, y > 7): none.
    assert list(zip(t.gx.tolist(), t.gy.tolist())) == [(2, 5), (0, 7), (1, 5), (2, 6)]
    torch.testing.assert_close(t.box[:, :2], torch.tensor([[0.3, 0.7], [0.3, 0.6],
                                                           [1.3, 0.7], [0.3, -0.3]]))
    assert t.cls.tolist() == [1, 0, 1, 1] and t.image.tolist() == [0, 0, 0, 0]


def test_a_neighbour_cell_predicting_the_true_box_has_no_box_loss():
    p = torch.full((1, 1, 4, 4, 6), -20.0)
    target = torch.tensor([[0.0, 0.0, 2.2 / 4, 1.5 / 4, 1 / 4, 1 / 4]])  # cell (1, 2), left: (1, 1)
    p[0, 0, 1, :, 2:4] = 0.0
    # Cell x 2 decodes 0.2 (sigmoid 0.35), its left neighbour 1.2 (sigmoid 0.85); y 0.5 both.
    p[0, 0, 1, 2, 0] = torch.logit(torch.tensor(0.35))
    p[0, 0, 1, 1, 0] = torch.logit(torch.tensor(0.85))
    p[0, 0, 1, 1:3, 1] = 0.0
    _, parts = yolo_loss([p], target, [torch.tensor([[16.0, 16.0]])], [16], HYP,
                         xy_scales=[2.0])
    assert parts[0].item() < 1e-6
    _, plain = yolo_loss([p], target, [torch.tensor([[16.0, 16.0]])], [16], HYP)
    assert plain[0].item() > 0.01  # the same outputs under YOLOv3's decode miss
