"""utils.engine.options: the command line as a run uses it, and what --resume keeps or refuses."""
import dataclasses

import pytest

import train
from tests.helpers import MICRO_CFG, run_train
from utils.base.errors import InputError
from utils.engine.options import RunOptions, frozen_layers, resolve_options


def test_options_mirror_the_parser_exactly():
    parser = train.get_args_parser()
    assert {f.name for f in dataclasses.fields(RunOptions)} == set(vars(parser.parse_args([])))


def test_resume_keeps_the_runs_options_and_honours_the_safe_ones(tiny_data, tmp_path):
    run = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--stop-after", "1")
    parser = train.get_args_parser()
    args = parser.parse_args(["--resume", str(run), "--notest", "--nosave", "--workers", "1"])
    options, ckpt, run_dir = resolve_options(args, parser)
    assert options.repro and options.epochs == 3 and options.cfg == str(MICRO_CFG)
    assert options.notest and options.nosave and options.workers == 1 and run_dir == run
    for refused in (["--name", "other"], ["--weights", "x.pt"], ["--project", "elsewhere"]):
        with pytest.raises(InputError, match="differs from the checkpoint's"):
            resolve_options(parser.parse_args(["--resume", str(run), *refused]), parser)


def test_resume_messages_name_the_real_cause(tiny_data, tmp_path):
    parser = train.get_args_parser()

    def resume(path, *extra):
        return resolve_options(parser.parse_args(["--resume", str(path), *extra]), parser)

    finished = run_train(tiny_data, tmp_path, "--epochs", "1", "--name", "done")
    with pytest.raises(InputError, match="already finished all 1 epochs"):
        resume(finished)
    started = tmp_path / "started"
    (started / "weights").mkdir(parents=True)
    (started / "opt.yaml").write_text("epochs: 2\n")
    with pytest.raises(InputError, match="has no weights/last.pt yet"):
        resume(started)
    cut = tmp_path / "cut" / "weights" / "last.pt"
    cut.parent.mkdir(parents=True)
    (cut.parent.parent / "opt.yaml").write_text("epochs: 2\n")
    cut.write_bytes((finished / "weights" / "last.pt").read_bytes()[:5000])
    with pytest.raises(InputError) as err:
        resume(cut)
    assert "truncated" in str(err.value) and str(err.value).endswith(")")


def test_resume_refuses_a_pinned_option_given_at_the_parsers_default(tiny_data, tmp_path):
    """--epochs 17 is train.py's default: given on --resume of a 3-epoch run it used to be
    dropped without a word, as if not given; every pinned option given is checked, whatever
    its value."""
    run = run_train(tiny_data, tmp_path, "--epochs", "3", "--stop-after", "1", "--img-size", "64",
                    "--batch-size", "4", "--seed", "5", "--name", "mine")
    parser = train.get_args_parser()
    defaults = {"--epochs": "17", "--img-size": "224", "--batch-size": "8", "--seed": "0",
                "--name": "exp", "--cfg": "cfg/yolov3-tiny.cfg", "--data": "data/shapes.data",
                "--project": "runs/train"}
    for flag, value in defaults.items():
        assert str(parser.get_default(flag[2:].replace("-", "_"))) in (value, "None")
        with pytest.raises(InputError, match=f"{flag} {value} differs from the checkpoint's"):
            resolve_options(parser.parse_args(["--resume", str(run), flag, value]), parser)
    # The checkpoint's own values, given again, are fine.
    options, _, _ = resolve_options(parser.parse_args(["--resume", str(run), "--epochs", "3",
                                                       "--seed", "5"]), parser)
    assert options.epochs == 3 and options.seed == 5


def test_a_new_run_gets_the_documented_defaults(tmp_path):
    parser = train.get_args_parser()
    options, _, _ = resolve_options(parser.parse_args([]), parser)
    assert (options.epochs, options.batch_size, options.img_size, options.seed) == (17, 8, 224, 0)
    assert options.cfg == "cfg/yolov3-tiny.cfg" and options.data == "data/shapes.data"
    assert options.project == "runs/train" and options.name == "exp" and options.weights == ""
    text = parser.format_help()
    options_part = text[text.index("options:"):]
    for flag in ("--epochs", "--batch-size", "--img-size", "--seed"):
        entry = options_part[options_part.index(f"  {flag} "):].split("\n  --")[0]
        assert entry.count("default") == 1, f"{flag}: {entry!r} should say its default once"


def test_noautoanchor_is_an_option_a_resume_pins():
    """A resume keeps its checkpoint's anchors either way; --noautoanchor given to a run that
    fitted them would claim a training it is not (the resume refusal: tests/test_autoanchor.py)."""
    from utils.engine.options import HONOURED_ON_RESUME, PINNED_ON_RESUME
    parser = train.get_args_parser()
    assert "noautoanchor" in PINNED_ON_RESUME and "noautoanchor" not in HONOURED_ON_RESUME
    assert parser.parse_args([]).noautoanchor is False
    assert parser.parse_args(["--noautoanchor"]).noautoanchor is True


@pytest.mark.parametrize("extra, message", [
    (["--patience", "0"], "--patience 0: must be a positive number of epochs"),
    (["--patience", "-2"], "--patience -2: must be a positive number of epochs"),
    (["--save-period", "0"], "--save-period 0: must be a positive number of epochs"),
    (["--image-weights", "--rect"], "--image-weights draws each epoch's images by their classes"),
    (["--freeze", "two"], "--freeze two: expected a layer count N"),
    (["--freeze", "1,-1"], "--freeze 1,-1: expected a layer count N"),
    (["--freeze", "0,1,1"], "--freeze 0,1,1: names a layer twice"),
])
def test_new_options_refuse_bad_values(extra, message):
    parser = train.get_args_parser()
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        resolve_options(parser.parse_args(extra), parser)


def test_freeze_counts_or_lists_layers():
    assert frozen_layers(None) == frozen_layers("0") == ()
    assert frozen_layers("3") == (0, 1, 2) and frozen_layers("4,0,2") == (0, 2, 4)
    assert frozen_layers("5,") == (5,)


def test_resume_pins_freeze_and_image_weights_and_honours_patience_and_save_period(tiny_data,
                                                                                  tmp_path):
    run = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--stop-after", "1",
                    "--freeze", "2", "--patience", "4")
    parser = train.get_args_parser()
    options, _, _ = resolve_options(parser.parse_args(["--resume", str(run)]), parser)
    assert (options.freeze, options.patience, options.save_period) == ("2", 4, None)
    options, _, _ = resolve_options(parser.parse_args(
        ["--resume", str(run), "--patience", "2", "--save-period", "1"]), parser)
    assert (options.patience, options.save_period) == (2, 1)
    for refused in (["--freeze", "3"], ["--image-weights"]):
        with pytest.raises(InputError, match="differs from the checkpoint's"):
            resolve_options(parser.parse_args(["--resume", str(run), *refused]), parser)


def test_resume_refuses_a_portable_run_of_the_first_recipe(tiny_data, tmp_path):
    """Recipe 1 (2-thread bits, channels-last) and recipe 2 (docs/threads.md) part from the
    first step: a resume across them would be silently another training."""
    import torch
    run = run_train(tiny_data, tmp_path, "--repro", "--epochs", "3", "--stop-after", "1")
    last = run / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["args"]["portable"] = True  # as a --portable run saved it before recipes were numbered
    torch.save(ckpt, last)
    parser = train.get_args_parser()
    with pytest.raises(InputError, match="a --portable run of recipe 1 .* this trainer computes "
                                         "recipe 2"):
        resolve_options(parser.parse_args(["--resume", str(run)]), parser)
