#!/usr/bin/env bash
# The main job on the bundled sample data: build the sample corpus, probe it, report the
# installation, curate in-pair clips from it on an embedded Ray cluster and cross-pair samples
# from those, build IDBench-Omni
# fixtures from it and evaluate them with every metric, then encode the curated samples into
# latents, train the debug model on them, sample the benchmark with it and score the videos.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
BIN=${OMNI_VENV:-.venv}/bin

echo "== 1/11 sample corpus -> $OUT/samples"
"$BIN/omni" samples make "$OUT/samples" --seed 0

echo
echo "== 2/11 probe every file of the corpus (broken files are expected to fail)"
"$BIN/omni" probe "$OUT/samples" --json > "$OUT/probe.json" || true
"$BIN/omni" probe "$OUT/samples" || true

echo
echo "== 3/11 doctor"
"$BIN/omni" doctor | tee "$OUT/doctor.txt"

echo
echo "== 4/11 in-pair curation on Ray (every file of the corpus: non-media files become error rows)"
echo "   the default models: the paper's where their checkpoints are, else the lite profile's"
echo "   real small models (Silero VAD + GE2E diarization, PocketSphinx, LBP faces, mouth motion);"
echo "   then scored against the corpus's truth (DER, association, WER, face recall)"
"$BIN/omni" curate inpair --input "$OUT/samples" --out "$OUT/inpair" --quiet
"$BIN/omni" curate score --run "$OUT/inpair" --corpus "$OUT/samples"

echo
echo "== 5/11 cross-pair curation on Ray: the same people's faces from other videos, cloned"
echo "   voices saying other words (espeak-ng test double) checked by the real GE2E speaker"
echo "   encoder, cross-pair samples and the 4:3:3 stage-3 table"
echo "   (configs/curate/crosspair-offline.yaml); retrieval scored vs the truth"
"$BIN/omni" curate crosspair --inpair "$OUT/inpair" --out "$OUT/crosspair" --quiet \
  --config configs/curate/crosspair-offline.yaml
"$BIN/omni" curate score --run "$OUT/crosspair" --corpus "$OUT/samples"

echo
echo "== 6/11 benchmark fixtures in the released layout (corpus clips as predictions)"
"$BIN/omni" benchmark fixtures "$OUT/idbench" --corpus "$OUT/samples"

echo
echo "== 7/11 evaluation: T-Sim and WER on the lite backends (GE2E, PocketSphinx: real models,"
echo "   marked as not the paper's protocol), the other metrics' debug twins (not meaningful)"
"$BIN/omni" eval --lite --bench "$OUT/idbench/bench" --pred "$OUT/idbench/pred" --out "$OUT/eval" \
  --name corpus-clips --quiet

echo
echo "== 8/11 latents of the curated samples (debug encoders)"
"$BIN/omni" latents --curation "$OUT/inpair" --out "$OUT/latents" --quiet

echo
echo "== 9/11 stage-1 training of the debug flavor on them (masked in-pair loss)"
"$BIN/omni" train --config configs/train/debug.yaml --stage 1 \
  --set "stages.1.data=$OUT/latents" --set "out=$OUT/train" --set stages.1.steps=100 \
  --set checkpoint_every=100 --set progress=false | tail -n 3

echo
echo "== 10/11 sample every benchmark instance with the trained checkpoint"
"$BIN/omni" benchmark import "$OUT/idbench/bench" "$OUT/idbench/instances.parquet"
"$BIN/omni" generate --instances "$OUT/idbench/instances.parquet" --out "$OUT/generated" \
  --checkpoint "$OUT/train/stage1/checkpoints/step-0000100" --steps 10 --quiet

echo
echo "== 11/11 evaluation of the generated videos (debug model: not meaningful)"
"$BIN/omni" eval --lite --bench "$OUT/idbench/bench" --pred "$OUT/generated" \
  --out "$OUT/eval-generated" \
  --name debug-model --quiet

echo
echo "Outputs:"
echo "  sample corpus     $OUT/samples   (ground truth: $OUT/samples/truth/*.parquet)"
echo "  probe report      $OUT/probe.json"
echo "  doctor report     $OUT/doctor.txt"
echo "  in-pair curation  $OUT/inpair/report.html, samples.parquet (+ 7 more tables), clips/,"
echo "                    references/, captions/; score vs the corpus truth: $OUT/inpair/score.json"
echo "  cross-pair        $OUT/crosspair/report.html, samples.parquet, voices/, stage3/ (the"
echo "                    stage-3 table); retrieval score: $OUT/crosspair/score.json"
echo "  benchmark         $OUT/idbench/bench (released layout), predictions $OUT/idbench/pred"
echo "  evaluation        $OUT/eval/table.md (.csv, .tex), results.parquet, summary.json"
echo "  latents           $OUT/latents (shards, index.parquet); training $OUT/train/stage1"
echo "                    (metrics.jsonl, checkpoints/); generated $OUT/generated/*.mp4,"
echo "                    scored in $OUT/eval-generated/table.md"
