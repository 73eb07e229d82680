"""Which models a job runs: the paper's, the lite profile's, or random twins asked for by name.

Every curation job has one switch, ``models``, beside ``weights``:

- ``auto`` (the default): the paper's models for every part whose checkpoints are present in
  the weights folder, the lite profile for the parts whose are not;
- ``paper``: the paper's models everywhere; a missing checkpoint is the job's one-line
  pre-flight error;
- ``lite``: the real small models that ship inside installed wheels (Silero VAD, the GE2E
  speaker encoder, PocketSphinx) and the classical detectors, with no weights folder at all.

``weights`` says where the paper's checkpoints are: a folder (``omni weights fetch``
layout), ``null`` for the default folder (``$OMNI_WEIGHTS`` or the XDG cache,
:func:`omni_core.weights.weights_root`), or the random twins by name: ``debug`` (tiny) and
``random`` (released sizes). Twins are never chosen for the user: ``auto`` with ``weights:
debug`` runs the twins because they were named.

:func:`choose` decides one part; each job resolves its parts into concrete backends before
anything starts, prints the result as its first line and records it in its summary.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omni_core.errors import OmniError, first_line

__all__ = ["MODELS", "TWINS", "Choice", "Resolved", "check_models", "choose", "weights_setting"]

MODELS = ("auto", "paper", "lite")
TWINS = ("debug", "random")


def check_models(value: str) -> None:
    if value not in MODELS:
        raise ValueError(f"models must be one of {', '.join(MODELS)}, got {value!r}")


def weights_setting(weights: str | os.PathLike[str] | None) -> str:
    """The concrete ``weights`` value the paper's models are built from: the twins' name, the
    folder given, or the default folder for ``None``."""
    if weights is None:
        from omni_core.weights import weights_root

        return str(weights_root())
    return str(weights)


@dataclass(frozen=True)
class Choice:
    """One part's decision: ``profile`` is ``paper`` or ``lite``; ``why`` says what decided
    it (shown to the user)."""

    profile: str
    why: str

    @property
    def lite(self) -> bool:
        return self.profile == "lite"


@dataclass(frozen=True)
class Resolved:
    """A job's config with every ``auto`` decided, and per part what runs and why
    (``parts``: part -> ``{"profile", "models", "why"}``); each job writes its headline."""

    config: Any  # the job's config dataclass (it has ``models`` and ``weights``)
    parts: dict[str, dict[str, str]]

    def lines(self) -> list[str]:
        """One line per part for the closing table."""
        return [f"{part}: {p['profile']} -- {p['models']} ({p['why']})"
                for part, p in self.parts.items()]

    def to_dict(self) -> dict[str, Any]:
        """``summary.json`` ``details.models``."""
        return {"models": self.config.models, "weights": self.config.weights,
                "parts": self.parts}


def choose(models: str, weights: str | os.PathLike[str] | None,
           checks: Sequence[Callable[[str], None]]) -> Choice:
    """Decide one part of a job. ``checks`` are the part's pre-flight checks of the paper's
    checkpoints (each raises :class:`OmniError` for a missing file and loads nothing), called
    with the concrete weights setting only under ``auto`` with a folder."""
    check_models(models)
    if models == "lite":
        return Choice("lite", "models: lite")
    setting = weights_setting(weights)
    if str(weights) in TWINS:
        return Choice("paper", f"the {weights} twins, asked for by name (random weights)")
    if models == "paper":
        return Choice("paper", f"models: paper, checkpoints from {setting}")
    for check in checks:
        try:
            check(setting)
        except OmniError as exc:
            return Choice("lite", _missing(exc, setting))
    return Choice("paper", f"checkpoints present in {setting}")



def _missing(exc: OmniError, setting: str) -> str:
    """A short why for a missing checkpoint: the manifest entry and how to get it."""
    entry = re.search(r"weights manifest entry '([^']+)'", str(exc))
    if entry is None:
        return f"no paper checkpoint: {first_line(exc)}"
    name = entry.group(1)
    return f"no paper checkpoint: {name} is not in {setting} (omni weights fetch {name})"
