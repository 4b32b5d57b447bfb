"""detect.py: one result per source file, unreadable images skipped and reported, label files
the label reader takes back, the class names and precision the user gave, and defaults that fit
the weights: the run's best-F1 threshold, fp32 on the CPU."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import detect
from models import Darknet
from tests.helpers import MICRO_CFG
from utils.base.atomic_io import atomic_torch_save
from utils.base.errors import ImageError, InputError
from utils.data.labels import parse_label_text
from utils.data.shapes import CLASS_NAMES
from utils.data.sources import Source, output_stems
from utils.engine.checkpoint import weights_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "micro.pt"
    atomic_torch_save(weights_checkpoint(Darknet(MICRO_CFG), list(CLASS_NAMES)), path)
    return path


def _checkpoint(path, **keys):
    """The ``weights`` fixture's model in a checkpoint with ``keys`` added (what a training
    checkpoint records: ``args``, ``epoch``, ``f1_conf``)."""
    torch.manual_seed(0)
    ckpt = weights_checkpoint(Darknet(MICRO_CFG), list(CLASS_NAMES))
    ckpt.update(keys)
    atomic_torch_save(ckpt, path)
    return path


def _image(path, seed=0):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return path


def _run(weights, source, tmp_path, *extra):
    args = detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(source), "--img-size", "64",
         "--conf-thres", "0.001", "--project", str(tmp_path / "out"), *extra])
    return detect.main(args)


def _detect(weights, source, tmp_path, *extra) -> torch.Tensor:
    """detect.py's detections of the one image ``source``, with its own defaults but for
    ``extra`` (no --conf-thres unless given)."""
    detections = {}
    detect.main(detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(source), "--img-size", "64",
         "--project", str(tmp_path / "out"), *extra]), detections)
    (found,) = detections.values()
    return found


def test_same_stem_in_one_folder_keeps_both_results(weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    _image(images / "a.png", 0)
    _image(images / "a.jpg", 1)
    _image(images / "b.png", 2)
    out = _run(weights, images, tmp_path)
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a_jpg.jpg", "a_png.jpg", "b.jpg"]


def test_output_stems_are_distinct_across_folders(tmp_path):
    files = [tmp_path / "x" / "a.png", tmp_path / "y" / "a.png", tmp_path / "a.jpg"]
    stems = output_stems([Source("image", str(f)) for f in files])
    assert len(set(stems.values())) == 3


def test_an_unreadable_image_is_skipped_and_the_run_fails_at_the_end(weights, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    _image(images / "good.png")
    (images / "bad.jpg").write_bytes(b"not an image")
    _image(images / "later.png", 1)
    with pytest.raises(ImageError, match=r"1 of 3 sources could not be read.*bad\.jpg"):
        _run(weights, images, tmp_path)
    out = tmp_path / "out" / "exp"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["good.jpg", "later.jpg"]
    assert "skipped" in capsys.readouterr().out


def test_save_txt_writes_labels_the_label_reader_accepts(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    out = _run(weights, tmp_path / "a.png", tmp_path, "--save-txt")
    text = (out / "labels" / "a.txt").read_text()
    rows, warnings = parse_label_text(text, len(CLASS_NAMES), "a.txt")
    assert text and warnings == [] and rows.shape[1] == 5
    assert "labels: class x y w h (normalized)\n" in capsys.readouterr().out
    scored = _run(weights, tmp_path / "a.png", tmp_path, "--save-txt", "--save-conf")
    assert {len(line.split()) for line in (scored / "labels" / "a.txt").read_text().splitlines()} \
        == {6}


def test_save_conf_without_save_txt_is_refused(weights, tmp_path):
    with pytest.raises(InputError, match="--save-txt"):
        _run(weights, tmp_path, tmp_path, "--save-conf")


def test_names_file_is_used_with_a_checkpoint(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    names = tmp_path / "mine.names"
    names.write_text("apple\nbanana\ncherry\ndate\n")
    assert detect.class_names(detect.get_args_parser().parse_args(
        ["--weights", "w", "--names", str(names)]), list(CLASS_NAMES), 4) == \
        ["apple", "banana", "cherry", "date"]
    assert "class names from" in capsys.readouterr().out
    _run(weights, tmp_path / "a.png", tmp_path, "--names", str(names), "--conf-thres", "0")
    found = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("a: "))
    assert any(name in found for name in ("apple", "banana", "cherry", "date"))
    assert not any(name in found for name in CLASS_NAMES)


def test_names_file_of_another_class_count_is_refused(weights, tmp_path):
    names = tmp_path / "three.names"
    names.write_text("a\nb\nc\n")
    with pytest.raises(InputError, match="3 names but the model has 4 classes"):
        _run(weights, tmp_path, tmp_path, "--names", str(names))


def test_precision_option_overrides_the_checkpoints(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    _run(weights, tmp_path / "a.png", tmp_path, "--precision", "bf16")
    assert "precision bf16 (--precision)\n" in capsys.readouterr().out
    _run(weights, tmp_path / "a.png", tmp_path)
    assert "precision fp32 (the checkpoint's)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        detect.get_args_parser().parse_args(["--weights", "w", "--precision", "fp8"])


def test_save_txt_writes_a_labels_folder_as_the_peers_do(weights, tmp_path):
    _image(tmp_path / "a.png")
    out = _run(weights, tmp_path / "a.png", tmp_path, "--save-txt")
    assert (out / "labels" / "a.txt").is_file() and not (out / "a.txt").exists()
    assert (out / "a.jpg").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--img-size", "0"], "--img-size 0: must be a positive multiple of 32"),
    (["--cfg", str(MICRO_CFG)], "--cfg applies to darknet weights files"),
])
def test_options_are_used_or_refused_never_replaced(weights, tmp_path, extra, message):
    _image(tmp_path / "a.png")
    args = detect.get_args_parser().parse_args(
        ["--weights", str(weights), "--source", str(tmp_path / "a.png"),
         "--project", str(tmp_path / "out"), *extra])
    with pytest.raises(InputError, match=message):
        detect.main(args)


def test_help_shows_the_thresholds_defaults():
    text = detect.get_args_parser().format_help()
    for flag, default in (("--conf-thres", "the run's best-F1 threshold"),
                          ("--iou-thres", "0.6")):
        entry = " ".join(text[text.index(f"  {flag} "):].split("\n  --")[0].split())
        assert f"default: {default}" in entry, entry
    assert "else 0.3" in " ".join(text.split())


def test_the_default_threshold_is_the_runs_best_f1_threshold(weights, tmp_path, capsys):
    """A training checkpoint keeps the score threshold of its evaluation's highest mean F1;
    without --conf-thres detect.py uses it and says so, and --conf-thres still wins."""
    _image(tmp_path / "a.png")
    everything = _detect(weights, tmp_path / "a.png", tmp_path, "--conf-thres", "0.001")
    assert "conf-thres 0.001 (--conf-thres)\n" in capsys.readouterr().out
    scores = everything[:, 4].sort().values
    conf = float(scores[len(scores) // 2 - 1: len(scores) // 2 + 1].mean())  # between two
    run = _checkpoint(tmp_path / "run.pt", epoch=16, f1_conf=conf)
    default = _detect(run, tmp_path / "a.png", tmp_path)
    assert f"conf-thres {conf:.3f} (the best-F1 score threshold of epoch 16's evaluation" \
        in capsys.readouterr().out
    assert 0 < len(default) < len(everything) and bool((default[:, 4] > conf).all())
    torch.testing.assert_close(default, _detect(run, tmp_path / "a.png", tmp_path,
                                                "--conf-thres", str(conf)), rtol=0, atol=0)
    assert len(_detect(run, tmp_path / "a.png", tmp_path, "--conf-thres", "0.001")) == \
        len(everything)


def test_weights_without_a_best_f1_threshold_fall_back_to_0_3_and_say_so(weights, tmp_path,
                                                                        capsys):
    """Older checkpoints, weights-only ones and unevaluated epochs keep none."""
    _image(tmp_path / "a.png")
    assert len(_detect(weights, tmp_path / "a.png", tmp_path)) == 0  # its scores are ~0.003
    out = capsys.readouterr().out
    assert "conf-thres 0.3 (the default: this checkpoint keeps no best-F1 threshold" in out
    assert "nothing above --conf-thres 0.3 " in out
    unevaluated = _checkpoint(tmp_path / "none.pt", epoch=3, f1_conf=None)
    assert len(_detect(unevaluated, tmp_path / "a.png", tmp_path)) == 0
    assert "conf-thres 0.3 (the default:" in capsys.readouterr().out


def test_a_bf16_run_computes_in_fp32_on_the_cpu_unless_asked(tmp_path, capsys):
    """The .pt ran in the run's bf16 while its .onnx export runs fp32, so the two gave other
    boxes by default; now the CPU computes in fp32 unless --precision says otherwise."""
    run = _checkpoint(tmp_path / "bf16.pt", args={"precision": "bf16"})
    _image(tmp_path / "a.png")
    default = _detect(run, tmp_path / "a.png", tmp_path, "--conf-thres", "0.001",
                      "--device", "cpu")
    out = capsys.readouterr().out
    assert "precision fp32 (the CPU's default, as an .onnx export computes; the run trained " \
        "in bf16: --precision bf16" in out and "rounds each layer's output" not in out
    fp32 = _detect(run, tmp_path / "a.png", tmp_path, "--conf-thres", "0.001",
                   "--precision", "fp32")
    torch.testing.assert_close(default, fp32, rtol=0, atol=0)
    _detect(run, tmp_path / "a.png", tmp_path, "--conf-thres", "0.001", "--precision", "bf16")
    out = capsys.readouterr().out
    assert "precision bf16 (--precision)" in out and "runs in fp32" in out


def test_nothing_found_says_the_highest_score_and_the_threshold(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    _run(weights, tmp_path / "a.png", tmp_path, "--conf-thres", "0.99")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("a: "))
    assert "nothing above --conf-thres 0.99" in line and "highest score" in line


def test_an_onnx_file_runs_with_device_cpu_where_it_runs_anyway(weights, tmp_path):
    pytest.importorskip("onnxruntime")
    from tools import export
    onnx_file = tmp_path / "m.onnx"
    export.main(export.get_args_parser().parse_args([str(weights), str(onnx_file),
                                                     "--img-size", "64"]))
    _image(tmp_path / "a.png")
    out = _run(onnx_file, tmp_path / "a.png", tmp_path, "--device", "cpu")
    assert (out / "a.jpg").is_file()
    with pytest.raises(InputError, match="--device does not apply to an ONNX file"):
        _run(onnx_file, tmp_path / "a.png", tmp_path, "--device", "0")


def _video(path, frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def test_a_source_list_reads_each_source_and_videos_frame_by_frame(weights, tmp_path):
    _image(tmp_path / "a.png")
    _video(tmp_path / "clip.avi")
    listing = tmp_path / "sources.txt"
    listing.write_text("a.png\n# a comment\n\nclip.avi\n")
    out = _run(weights, listing, tmp_path)
    assert sorted(p.name for p in out.glob("*.jpg")) == [
        "a.jpg", "clip_000000.jpg", "clip_000001.jpg", "clip_000002.jpg"]


def test_a_stream_that_stops_keeps_what_it_sent_and_exits_2(weights, tmp_path, monkeypatch):
    """The stream path, fed by a video file opened the same way: its end is a stream that
    stopped sending, said with the frames kept."""
    from utils.data import sources
    video = _video(tmp_path / "feed.avi", frames=2)
    monkeypatch.setattr(sources, "list_sources", lambda _s: [Source("stream", str(video))])
    monkeypatch.setattr(detect, "list_sources", lambda _s: [Source("stream", str(video))])
    with pytest.raises(ImageError, match="the stream stopped sending frames after 2"):
        _run(weights, "rtsp://camera/feed", tmp_path)
    out = tmp_path / "out" / "exp"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["stream_000000.jpg",
                                                          "stream_000001.jpg"]


def test_an_unreachable_stream_is_said_with_exit_2(weights, tmp_path):
    # Port 9 on the loopback address: nothing listens there, the connection is refused.
    with pytest.raises(ImageError, match="cannot open this stream"):
        _run(weights, "http://127.0.0.1:9/live", tmp_path)


def test_source_kinds_are_told_apart(tmp_path):
    from utils.data.sources import list_sources
    assert list_sources("0") == [Source("webcam", "0")]
    assert list_sources("rtsp://host/cam")[0].kind == "stream"
    assert list_sources("https://host/clip.mp4")[0].kind == "video"
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="the source list is empty"):
        list_sources(str(tmp_path / "empty.txt"))
    (tmp_path / "outer.txt").write_text("empty.txt\n")
    with pytest.raises(InputError, match="names another list"):
        list_sources(str(tmp_path / "outer.txt"))


def test_crops_csv_and_drawing_options(weights, tmp_path):
    _image(tmp_path / "a.png")
    out = _run(weights, tmp_path / "a.png", tmp_path, "--save-crop", "--save-csv",
               "--line-thickness", "2", "--hide-conf", "--max-det", "3")
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "frame,class,name,score,x1,y1,x2,y2" and 1 <= len(rows) - 1 <= 3
    crops = list((out / "crops").rglob("*.jpg"))
    assert len(crops) == len(rows) - 1 and {c.parent.name for c in crops} <= set(CLASS_NAMES)
    plain = _run(weights, tmp_path / "a.png", tmp_path, "--hide-labels", "--max-det", "3")
    assert (plain / "a.jpg").is_file()


def test_agnostic_nms_keeps_one_box_where_classes_overlap():
    # Two classes on one box: class-wise NMS keeps both, agnostic NMS one.
    prediction = torch.zeros(1, 2, 7)
    prediction[0, :, :4] = torch.tensor([32.0, 32.0, 20.0, 20.0])
    prediction[0, :, 4] = 0.9
    prediction[0, 0, 5], prediction[0, 1, 6] = 0.9, 0.8

    def predict(_tensor):
        return prediction
    frame = np.zeros((64, 64, 3), np.uint8)
    both, _ = detect.detect_frame(predict, frame, 64, 0.3, 0.5, None)
    one, _ = detect.detect_frame(predict, frame, 64, 0.3, 0.5, None, agnostic=True)
    assert len(both) == 2 and len(one) == 1


@pytest.mark.parametrize("extra, message", [
    (["--max-det", "0"], "--max-det 0: must be at least 1"),
    (["--line-thickness", "0"], "--line-thickness 0: must be at least 1"),
])
def test_drawing_and_limit_options_out_of_range_are_refused(weights, tmp_path, extra, message):
    with pytest.raises(InputError, match=message):
        _run(weights, tmp_path, tmp_path, *extra)


def test_a_reduced_precision_run_says_why_its_onnx_export_differs(weights, tmp_path, capsys):
    _image(tmp_path / "a.png")
    _run(weights, tmp_path / "a.png", tmp_path, "--precision", "bf16")
    assert "an .onnx export of these weights runs in fp32" in capsys.readouterr().out
    _run(weights, tmp_path / "a.png", tmp_path, "--precision", "fp32")
    assert "onnx" not in capsys.readouterr().out
