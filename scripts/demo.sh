#!/usr/bin/env bash
# The main job on the bundled sample data: build the sample corpus, probe it, report the
# installation. Later stages (curation -> training -> evaluation) extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
BIN=${OMNI_VENV:-.venv}/bin

echo "== 1/3 sample corpus -> $OUT/samples"
"$BIN/omni" samples make "$OUT/samples" --seed 0

echo
echo "== 2/3 probe every file of the corpus (broken files are expected to fail)"
"$BIN/omni" probe "$OUT/samples" --json > "$OUT/probe.json" || true
"$BIN/omni" probe "$OUT/samples" || true

echo
echo "== 3/3 doctor"
"$BIN/omni" doctor | tee "$OUT/doctor.txt"

echo
echo "Outputs:"
echo "  sample corpus     $OUT/samples   (ground truth: $OUT/samples/truth/*.parquet)"
echo "  probe report      $OUT/probe.json"
echo "  doctor report     $OUT/doctor.txt"
