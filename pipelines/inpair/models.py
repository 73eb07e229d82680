"""Which models an in-pair run uses: the ``models`` switch resolved into concrete backends.

:func:`resolve_models` runs on the driver before anything starts (the result is the config the
stages, the result key and the provenance see) and decides three parts with
:func:`omni_core.models.profile.choose`:

=========  ============================================  ===========================================
part       paper (checkpoints in the weights folder)     lite (no weights folder)
=========  ============================================  ===========================================
audio      ClearerVoice (optional), pyannote/DiariZen,   Silero VAD + GE2E diarizer, PocketSphinx
           Whisper
faces      SCRFD + ArcFace of the insightface pack       LBP cascade + the pack's ArcFace debug twin
associate  SyncNet's Sync-C                              mouth motion vs speech energy
=========  ============================================  ===========================================

A part set explicitly in the config (``audio.backend: lite``, ``faces.backend: lbp``,
``associate.backend: motion`` ...) is kept as given. ``describe`` lines say what was chosen and
why; the job prints them first and keeps them in its summary (``details.models``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from omni_core.models.profile import Choice, Resolved, choose, weights_setting

from .config import InpairConfig

__all__ = ["ResolvedModels", "resolve_models"]

LITE_FACES = ("LBP cascade (scikit-image) + ArcFace debug twin (random weights: identities "
              "within a clip only)")


@dataclass(frozen=True)
class ResolvedModels(Resolved):
    """The concrete config and, per part (audio, faces, associate), what runs and why."""

    config: InpairConfig

    def headline(self) -> str:
        """The first line a run prints."""
        profiles = sorted({p["profile"] for p in self.parts.values()})
        name = profiles[0] if len(profiles) == 1 else "mixed"
        return (f"models: {name} (models: {self.config.models}) -- "
                + "; ".join(f"{part}: {p['models']}" for part, p in self.parts.items()))


def _given(profile: str, value: str) -> Choice:
    return Choice(profile, f"set in the config ({value})")


def resolve_models(cfg: InpairConfig) -> ResolvedModels:
    """Every ``auto`` of ``cfg`` decided (see the module docstring); ``weights`` becomes the
    concrete folder (or twin name) when any part reads it, else stays ``None``."""
    from omni_core.models.face import face_model_class
    from omni_core.models.syncnet import SyncNet

    from .audio import AudioModels

    a, f, s = cfg.audio, cfg.faces, cfg.associate
    parts: dict[str, dict[str, str]] = {}

    # audio
    if a.backend == "annotations":
        audio = Choice("annotations", "set in the config (test double: the corpus's truth)")
    elif a.backend == "auto":
        audio = choose(cfg.models, cfg.weights,
                       [lambda w: AudioModels.check(replace(a, backend="paper"), w)])
    else:
        audio = _given(a.backend, f"audio.backend: {a.backend}")
    a = replace(a, backend=audio.profile if audio.profile != "annotations" else "annotations")
    parts["audio"] = {"profile": audio.profile, "why": audio.why, "models": {
        "paper": f"{'ClearerVoice + ' if a.enhance else ''}{a.diarizer} diarization + Whisper",
        "lite": f"{'ClearerVoice + ' if a.enhance else ''}Silero VAD + GE2E diarizer + "
                f"PocketSphinx (US English)",
        "annotations": "the sample corpus's annotations (test double)"}[audio.profile]}

    # faces: the detector and the embedder
    pack = face_model_class(f.pack)
    pack_choice = choose(cfg.models, cfg.weights, [pack.check_weights])
    backend = f.backend if f.backend != "auto" else ("lbp" if pack_choice.lite else "scrfd")
    embedder = f.embedder if f.embedder != "auto" else ("twin" if pack_choice.lite else "arcface")
    f = replace(f, backend=backend, embedder=embedder)
    if (backend, embedder) == ("lbp", "twin"):
        profile, described = "lite", LITE_FACES
    else:
        profile = "paper" if (backend, embedder) == ("scrfd", "arcface") else "mixed"
        described = (f"{'SCRFD' if backend == 'scrfd' else 'LBP cascade'} + ArcFace "
                     f"({f.pack}{', debug twin' if embedder == 'twin' else ''})")
    why = (pack_choice.why if "auto" in (cfg.faces.backend, cfg.faces.embedder) else
           f"set in the config (faces.backend: {backend}, faces.embedder: {embedder})")
    parts["faces"] = {"profile": profile, "models": described, "why": why}

    # speaker <-> face association
    if s.backend == "auto":
        sync = choose(cfg.models, cfg.weights, [SyncNet.check_weights])
        s = replace(s, backend="motion" if sync.lite else "syncnet")
    else:
        sync = _given("lite" if s.backend == "motion" else "paper",
                      f"associate.backend: {s.backend}")
    parts["associate"] = {"profile": sync.profile, "why": sync.why, "models": {
        "syncnet": "SyncNet Sync-C", "motion": "mouth motion vs speech energy"}[s.backend]}

    reads_weights = (a.backend == "paper" or a.enhance or embedder == "arcface"
                     or backend == "scrfd" or s.backend == "syncnet")
    weights = weights_setting(cfg.weights) if reads_weights else cfg.weights
    resolved = replace(cfg, weights=weights, audio=a, faces=f, associate=s)
    return ResolvedModels(resolved, parts)
