"""Model wrappers shared by the curation pipelines and the evaluator.

Each module wraps one upstream model family as an :class:`omni_core.weights.PretrainedComponent`
(real checkpoint from the local weights folder, or a tiny seeded debug twin) together with the
model-level pre- and post-processing it needs: :mod:`.face` (insightface SCRFD + ArcFace packs,
LBP cascade, 5-point alignment), :mod:`.s3fd` (the S3FD face detector of syncnet_python),
:mod:`.syncnet` (SyncNet v2, face-track crops, MFCC, Sync-C / Sync-D / AV offset) and
:mod:`.whisper` (openai-whisper ASR). Metric protocols and registration stay in
``evaluation.metrics``; nothing here imports that package. Import the submodules directly:
this package imports nothing heavy on its own.
"""
