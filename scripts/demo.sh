#!/usr/bin/env bash
# The main job on the bundled sample data: build the sample corpus, probe it, report the
# installation, curate in-pair clips from it on an embedded Ray cluster, build IDBench-Omni
# fixtures from it and evaluate them with every metric. Training extends this script later.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
BIN=${OMNI_VENV:-.venv}/bin

echo "== 1/6 sample corpus -> $OUT/samples"
"$BIN/omni" samples make "$OUT/samples" --seed 0

echo
echo "== 2/6 probe every file of the corpus (broken files are expected to fail)"
"$BIN/omni" probe "$OUT/samples" --json > "$OUT/probe.json" || true
"$BIN/omni" probe "$OUT/samples" || true

echo
echo "== 3/6 doctor"
"$BIN/omni" doctor | tee "$OUT/doctor.txt"

echo
echo "== 4/6 in-pair curation on Ray (every file of the corpus: non-media files become error rows)"
echo "   offline backends (no weights): LBP faces, mouth-motion association, and the corpus"
echo "   annotations standing in for diarization + ASR (configs/curate/inpair-offline.yaml)"
"$BIN/omni" curate inpair --input "$OUT/samples" --out "$OUT/inpair" --quiet \
  --config configs/curate/inpair-offline.yaml
"$BIN/omni" curate score --run "$OUT/inpair" --corpus "$OUT/samples"

echo
echo "== 5/6 benchmark fixtures in the released layout (corpus clips as predictions)"
"$BIN/omni" benchmark fixtures "$OUT/idbench" --corpus "$OUT/samples"

echo
echo "== 6/6 evaluation, every metric's debug twin (numbers are not meaningful)"
"$BIN/omni" eval --bench "$OUT/idbench/bench" --pred "$OUT/idbench/pred" --out "$OUT/eval" \
  --name corpus-clips --quiet

echo
echo "Outputs:"
echo "  sample corpus     $OUT/samples   (ground truth: $OUT/samples/truth/*.parquet)"
echo "  probe report      $OUT/probe.json"
echo "  doctor report     $OUT/doctor.txt"
echo "  in-pair curation  $OUT/inpair/report.html, samples.parquet (+ 7 more tables), clips/,"
echo "                    references/, captions/; score vs the corpus truth: $OUT/inpair/score.json"
echo "  benchmark         $OUT/idbench/bench (released layout), predictions $OUT/idbench/pred"
echo "  evaluation        $OUT/eval/table.md (.csv, .tex), results.parquet, summary.json"
