"""Model wrappers shared by the curation pipelines and the evaluator: every network a pipeline
runs lives here.

Each module wraps one upstream model family as an :class:`omni_core.weights.PretrainedComponent`
(real checkpoint from the local weights folder, or a tiny seeded debug twin) together with the
model-level pre- and post-processing it needs: :mod:`.face` (insightface SCRFD + ArcFace packs,
LBP cascade, 5-point alignment), :mod:`.s3fd` (the S3FD face detector of syncnet_python),
:mod:`.syncnet` (SyncNet v2, face-track crops, MFCC, Sync-C / Sync-D / AV offset),
:mod:`.whisper` (openai-whisper ASR, words with timestamps), :mod:`.diarizer` (pyannote.audio /
DiariZen speaker diarization), :mod:`.enhancer` (ClearerVoice speech enhancement),
:mod:`.wavlm` (the one WavLM), :mod:`.speaker` (WavLM + ECAPA-TDNN speaker embeddings) and
:mod:`.f5tts` (F5-TTS voice cloning). The ``lite`` models are real small models whose files
ship inside their wheels, so they need no weights folder (:mod:`.packaged`): :mod:`.vad`
(Silero VAD), :mod:`.ge2e` (Resemblyzer's GE2E speaker encoder), :mod:`.sphinx`
(PocketSphinx US-English ASR, a drop-in for Whisper's words) and :mod:`.lite_diarizer`
(VAD + GE2E + clustering, a drop-in for :mod:`.diarizer`). Networks only the evaluator runs
are in ``evaluation.models``; metric protocols and registration in ``evaluation.metrics``.
Nothing here imports those packages. Import the submodules directly: this package imports
nothing heavy on its own.
"""
