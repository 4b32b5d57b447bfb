#!/usr/bin/env bash
# The article's experiment on the built-in dataset, at full length, beside the seed spread:
# two ordinary runs, two --repro runs, --repro with 1 thread, and the ordinary training under
# seeds 1 and 2 (seed 0 is ordinary_a); then the drift report of each pair and the seed spread.
#   bash scripts/article_table.sh [EPOCHS]     # default 17 (the default training); ~35 min on
#                                              # 2 cores; results in runs/article/
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-17}
common=(--epochs "$epochs" --device cpu --project runs/article --quiet)
python train.py "${common[@]}" --name ordinary_a
python train.py "${common[@]}" --name ordinary_b
python train.py "${common[@]}" --seed 1 --name seed1
python train.py "${common[@]}" --seed 2 --name seed2
python train.py "${common[@]}" --repro --name repro_a
python train.py "${common[@]}" --repro --name repro_b
python train.py "${common[@]}" --repro --threads 1 --name repro_1thread
for pair in "ordinary_a ordinary_b" "repro_a repro_b" "repro_a repro_1thread" "ordinary_a repro_a"; do
  set -- $pair
  echo "=== $1 vs $2"
  python -m utils.drift "runs/article/$1" "runs/article/$2" --out "runs/article/drift_$1_$2" \
    | grep -E "^=>|mAP@0.5|settings|WARNING|  [a-z_.]+:" || true
done
echo "=== seed spread of the ordinary training (seeds 0, 1, 2)"
python -m utils.compare_groups --a runs/article/ordinary_a runs/article/seed1 runs/article/seed2 \
  --b runs/article/repro_a runs/article/repro_b --out runs/article/groups || true
