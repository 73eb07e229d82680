"""The evaluator's networks and tokenizers, one module per upstream model family.

Each wraps its model as an :class:`omni_core.weights.PretrainedComponent` (real checkpoint from
the local weights folder, or a tiny seeded debug twin) with the model-level pre- and
post-processing it needs: :mod:`.clip_vit` (CLIP ViT towers and VBench's ``clip_transform``),
:mod:`.clip_bpe` (CLIP's BPE tokenizer), :mod:`.torch_archive` (reading TorchScript archives
without running pickled code), :mod:`.laion_aesthetic` (AES), :mod:`.viclip` (ViCLIP),
:mod:`.clap` (LAION-CLAP) and :mod:`.audiobox_aesthetics` (PQ). The metric protocols and their
registration are in ``evaluation.metrics``, which imports these; nothing here imports it.
Networks the curation pipelines use too live in ``omni_core.models`` (Whisper, the speaker
verifier and its WavLM, ArcFace, SyncNet). Import the submodules directly: this package
imports nothing heavy on its own.
"""
