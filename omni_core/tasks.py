"""The three tasks of the model and how a task mix is dealt out over samples.

``r2av`` (references -> audio + video), ``rv2av`` (also a masked source video), ``ra2v``
(also a driving audio); paper.md trains stage 3 on R2AV : RV2AV : RA2V = 4 : 3 : 3. The
curation's stage-3 table and the trainer's dummy latents both deal a mix with
:func:`deal_tasks`, so the counts are the same wherever a mix is turned into samples.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import OmniError

TASKS = ("r2av", "rv2av", "ra2v")


def deal_tasks(mix: Mapping[str, float], n: int) -> list[str]:
    """``n`` tasks in the proportions of ``mix`` (non-negative weights of :data:`TASKS`, not
    all zero), interleaved: each next one is the task furthest behind its share, so every
    prefix holds the mix as closely as whole counts can (4 : 3 : 3 over 10 gives exactly 4,
    3 and 3; over any n each count is within one of its exact share)."""
    if set(mix) - set(TASKS) or any(float(w) < 0 for w in mix.values()):
        raise OmniError(f"a task mix takes non-negative weights of {', '.join(TASKS)}: "
                        f"{dict(mix)}")
    weights = {t: float(w) for t, w in mix.items() if float(w) > 0}
    if not weights:
        raise OmniError(f"a task mix needs a positive weight: {dict(mix)}")
    total = sum(weights.values())
    counts = dict.fromkeys(weights, 0)
    out = []
    for i in range(n):
        t = max(weights, key=lambda k: (weights[k] * (i + 1) / total - counts[k], weights[k]))
        counts[t] += 1
        out.append(t)
    return out
