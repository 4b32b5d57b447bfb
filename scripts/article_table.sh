#!/usr/bin/env bash
# The article's experiment on the built-in dataset: two ordinary runs and two --repro runs of
# the same training on the CPU, then the drift report of each pair (and --repro with 1 thread
# against 2, the effect the article's point 6 names).
#   bash scripts/article_table.sh [EPOCHS]        # default 4 epochs; results in runs/article/
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-4}
common=(--epochs "$epochs" --device cpu --project runs/article --quiet)
python train.py "${common[@]}" --name ordinary_a
python train.py "${common[@]}" --name ordinary_b
python train.py "${common[@]}" --repro --name repro_a
python train.py "${common[@]}" --repro --name repro_b
python train.py "${common[@]}" --repro --threads 1 --name repro_1thread
for pair in "ordinary_a ordinary_b" "repro_a repro_b" "repro_a repro_1thread" "ordinary_a repro_a"; do
  set -- $pair
  echo "=== $1 vs $2"
  python -m utils.drift "runs/article/$1" "runs/article/$2" --out "runs/article/drift_$1_$2" \
    | grep -E "^=>|mAP@0.5|settings|WARNING|  [a-z_.]+:" || true
done
