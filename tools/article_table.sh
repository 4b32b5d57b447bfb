#!/usr/bin/env bash
# The article's experiment on the built-in dataset, at full length, beside the seed spread:
# two ordinary runs, two --repro runs, --repro with 1 thread, and the ordinary training under
# seeds 1 and 2 (seed 0 is ordinary_a); then the drift report of each pair and the seed spread.
#   bash tools/article_table.sh [EPOCHS] [FOLDER]   # default 17 (the default training) and
#                                                     # runs/article; ~35 min on 2 cores
# Each call writes a new FOLDER/attemptN and compares only the runs it trained: a second call
# after a stopped one would otherwise train ordinary_a2 and compare the first call's ordinary_a.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-17}
folder=${2:-runs/article}
mkdir -p "$folder"
n=1
while [ -e "$folder/attempt$n" ]; do n=$((n + 1)); done
until mkdir "$folder/attempt$n" 2>/dev/null; do n=$((n + 1)); done  # atomic: never shared
out="$folder/attempt$n"
echo "results in $out"
common=(--epochs "$epochs" --device cpu --project "$out" --quiet)
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
  python -m tools.drift "$out/$1" "$out/$2" --out "$out/drift_$1_$2" \
    | grep -E "^=>|mAP@0.5|settings|WARNING|  [a-z_.]+:" || true
done
echo "=== seed spread of the ordinary training (seeds 0, 1, 2)"
python -m tools.compare_groups --a "$out/ordinary_a" "$out/seed1" "$out/seed2" \
  --b "$out/repro_a" "$out/repro_b" --out "$out/groups" || true
