"""Which models a cross-pair run uses: the ``models`` switch resolved for the clone check.

The check's speaker verifier and recogniser are the part the switch decides
(:func:`omni_core.models.profile.choose`): the paper's WavLM-large + ECAPA and Whisper
large-v3 where their checkpoints are in the weights folder (or their twins, by name), else the
lite GE2E encoder and PocketSphinx from their wheels. The clone backend (``clone.backend``) is
always the one configured: no cloner ships in a wheel. Like in-pair curation, the job prints
the choice first and keeps it in ``summary.json`` ``details.models``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from omni_core.models.profile import Choice, Resolved, choose, weights_setting

from .config import CrosspairConfig

__all__ = ["ResolvedModels", "resolve_models"]

CHECK_MODELS = {"paper": "WavLM-large + ECAPA speaker verifier, Whisper large-v3",
                "lite": "GE2E speaker encoder, PocketSphinx (US English)"}


@dataclass(frozen=True)
class ResolvedModels(Resolved):
    """The concrete config and, per part (check, clone), what runs and why."""

    config: CrosspairConfig

    def headline(self) -> str:
        c = self.parts["check"]
        return (f"models: {c['profile']} (models: {self.config.models}) -- clone check: "
                f"{c['models']}; clone: {self.parts['clone']['models']}")


def resolve_models(cfg: CrosspairConfig) -> ResolvedModels:
    """``check.backend`` decided; ``weights`` concrete when a part reads it."""
    from .voices import check_check_models

    c = cfg.check
    if c.backend == "auto":
        choice = choose(cfg.models, cfg.weights, [lambda w: check_check_models(False, w)])
    else:
        choice = Choice(c.backend, f"set in the config (check.backend: {c.backend})")
    clone = cfg.clone
    double = clone.backend == "espeak"
    parts = {
        "check": {"profile": choice.profile, "models": CHECK_MODELS[choice.profile],
                  "why": choice.why},
        "clone": {"profile": "test double" if double else "paper",
                  "models": clone.backend + (" (test double)" if double else "")
                  + (" + ClearerVoice" if clone.enhance else ""),
                  "why": "clone.backend"}}
    reads = choice.profile == "paper" or clone.enhance or clone.backend == "f5-tts"
    weights = weights_setting(cfg.weights) if reads else cfg.weights
    return ResolvedModels(replace(cfg, weights=weights, check=replace(c, backend=choice.profile)),
                          parts)
