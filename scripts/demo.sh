#!/usr/bin/env bash
# The main job on the bundled sample data: build the sample corpus, probe it, report the
# installation, build IDBench-Omni fixtures from it and evaluate them with every metric.
# Later stages (curation -> training) extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
BIN=${OMNI_VENV:-.venv}/bin

echo "== 1/5 sample corpus -> $OUT/samples"
"$BIN/omni" samples make "$OUT/samples" --seed 0

echo
echo "== 2/5 probe every file of the corpus (broken files are expected to fail)"
"$BIN/omni" probe "$OUT/samples" --json > "$OUT/probe.json" || true
"$BIN/omni" probe "$OUT/samples" || true

echo
echo "== 3/5 doctor"
"$BIN/omni" doctor | tee "$OUT/doctor.txt"

echo
echo "== 4/5 benchmark fixtures in the released layout (corpus clips as predictions)"
"$BIN/omni" benchmark fixtures "$OUT/idbench" --corpus "$OUT/samples"

echo
echo "== 5/5 evaluation, every metric's debug twin (numbers are not meaningful)"
"$BIN/omni" eval --bench "$OUT/idbench/bench" --pred "$OUT/idbench/pred" --out "$OUT/eval" \
  --name corpus-clips --quiet

echo
echo "Outputs:"
echo "  sample corpus     $OUT/samples   (ground truth: $OUT/samples/truth/*.parquet)"
echo "  probe report      $OUT/probe.json"
echo "  doctor report     $OUT/doctor.txt"
echo "  benchmark         $OUT/idbench/bench (released layout), predictions $OUT/idbench/pred"
echo "  evaluation        $OUT/eval/table.md (.csv, .tex), results.parquet, summary.json"
