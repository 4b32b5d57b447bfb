"""What a label conversion did (tools.convert_labels): the report it writes into the project
(counts, every box changed or left out, the sources' digests) and the summary it prints."""
from __future__ import annotations

import hashlib
from pathlib import Path

from utils.base.errors import counted
from utils.data.label_conversion import Conversion

REPORT_FILE = "conversion_report.json"  # a VOC root's, all its splits at once
PRINTED_EVENTS = 50


def report_file(options: dict) -> str:
    """The report's name: one per COCO split (splits of one project are converted one call
    each, and a later call must not overwrite an earlier one's events), one for a VOC root."""
    return f"conversion_report_{options['split']}.json" if options["format"] == "coco" \
        else REPORT_FILE


def sha256_of(paths: list[Path]) -> str:
    """One digest over files in order (name and bytes): the sources a project came from."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def report_of(conv: Conversion, sources: dict[str, str], options: dict) -> dict:
    return {"sources_sha256": sources, "options": options,
            "images": len(conv.labels), "boxes": conv.counts["boxes"],
            "classes": len(conv.names),
            "boxes_per_class": {n: conv.per_class[n] for n in conv.names},
            "splits": {k: len(v) for k, v in conv.splits.items()},
            "counts": {k: v for k, v in sorted(conv.counts.items()) if k != "boxes"},
            "events": conv.events}


def summary(report: dict, out: Path) -> str:
    """What the conversion did, for the terminal: counts, the first events, the report file."""
    lines = [f"{counted(report['images'], 'image')}, {counted(report['boxes'], 'box', 'boxes')}, "
             f"{counted(report['classes'], 'class')} "
             f"({', '.join(f'{n} {k}' for n, k in report['boxes_per_class'].items())}); "
             f"splits: {', '.join(f'{k} {v}' for k, v in report['splits'].items())}"]
    empty = [n for n, k in report["boxes_per_class"].items() if not k]
    if empty:
        # A class no box uses still gets the model's outputs and, unseen, trains towards "never";
        # COCO exports list such categories (a parent category, a class of another split).
        lines.append(f"no box of {counted(len(empty), 'class')}: {', '.join(empty)} (kept in "
                     "the class list, which the model's outputs follow; mAP leaves them out)")
    single = [n for n, k in report["boxes_per_class"].items() if k == 1]
    if single:
        # One box is in one split only: the class is either never trained on or scored on one
        # box, whose AP is 0 or 1 and moves mAP by 1/classes.
        lines.append(f"one box only of {counted(len(single), 'class')}: {', '.join(single)} "
                     "(too few to learn from; its AP, if it is in the validation split, is "
                     "one box's)")
    counts = report["counts"]
    lines.append("changed or left out: " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                            or "nothing"))
    lines += report["events"][:PRINTED_EVENTS]
    if len(report["events"]) > PRINTED_EVENTS:
        lines.append(f"... {len(report['events']) - PRINTED_EVENTS} more")
    lines.append(f"every event and the source digests: {out / report_file(report['options'])}")
    return "\n".join(lines)
