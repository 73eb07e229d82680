#!/usr/bin/env bash
# The main job on the bundled sample data: build the sample corpus, probe it, report the
# installation, curate in-pair clips from it on an embedded Ray cluster and cross-pair samples
# from those, build IDBench-Omni
# fixtures from it and evaluate them with every metric, then encode the curated samples into
# latents, train the debug model on them, and compare it on the benchmark with the corpus
# clips and a copy-paste baseline (tables with intervals, HTML report).
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
echo "== 6/11 benchmark fixtures in the released layout (corpus clips as predictions): R2AV with"
echo "   one, two and three people, RV2AV (masked source video) and RA2V (driving audio)"
"$BIN/omni" benchmark fixtures "$OUT/idbench" --corpus "$OUT/samples" --tasks r2av --people 1,2,3
"$BIN/omni" benchmark fixtures "$OUT/idbench" --corpus "$OUT/samples" --tasks rv2av,ra2v --people 1

echo
echo "== 7/11 evaluation of the corpus clips: T-Sim and WER on the lite backends (GE2E,"
echo "   PocketSphinx: real models, marked as not the paper's protocol), the other metrics'"
echo "   debug twins (not meaningful)"
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
echo "== 10/11 benchmark comparison: the corpus clips, the trained debug model (sampled here)"
echo "   and the copy-paste baseline, scored with the same metrics (the corpus clips' scores"
echo "   come from step 7's cache); tables with 95% intervals, n and paired significance marks,"
echo "   the paper's published rows below, per-speaker tables and the HTML report"
cat > "$OUT/models.yaml" <<YAML
reference: corpus-clips
models:
  - {name: corpus-clips, predictions: idbench/pred}
  - name: debug-model
    checkpoint: train/stage1/checkpoints/step-0000100
    generate: {flavor: debug, steps: 10}
  - {name: copy-paste, baseline: copy_paste}
YAML
"$BIN/omni" benchmark run --bench "$OUT/idbench/bench" --models "$OUT/models.yaml" \
  --out "$OUT/comparison" --cache "$OUT/eval" --lite --published --quiet

echo
echo "== 11/11 a blind user study of that comparison: 3 raters, each item rated twice, one"
echo "   repeated and one broken video per rater as attention checks (docs/study.md)"
rm -rf "$OUT/study"
"$BIN/omni" study create --comparison "$OUT/comparison" --out "$OUT/study" --raters 3 \
  --ratings 2
echo "   (rate it: omni study serve $OUT/study, open a link; then omni study aggregate $OUT/study)"

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
echo "                    (metrics.jsonl, checkpoints/)"
echo "  comparison        $OUT/comparison/report/index.html (open it in a browser),"
echo "                    tables.md (tables/*.md, .csv, .tex), cells.parquet, pairs.csv;"
echo "                    the debug model's videos in $OUT/comparison/predictions/debug-model"
echo "  user study        $OUT/study (links.txt: one link per rater; docs/study.md)"
