"""Optional speech enhancement with ClearerVoice (``clearvoice``); disabled, the identity.

Used by the in-pair curation's audio stage (before diarization) and by the cross-pair voice
stage (between a cloned voice and its check). See :class:`Enhancer` for how the checkpoint is
served from the weights folder without ClearerVoice ever downloading one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from omni_core.errors import OmniError, first_line
from omni_core.media.audio import to_mono
from omni_core.media.write import temp_wav

__all__ = ["CLEARVOICE_RATES", "SAMPLE_RATE", "Enhancer", "clearvoice_entry"]

SAMPLE_RATE = 16000

#: Native sample rate of each ClearerVoice speech-enhancement model with a registry entry
#: (``clearvoice_entry``); register another model's checkpoint to add it here.
CLEARVOICE_RATES: dict[str, int] = {
    "MossFormerGAN_SE_16K": 16000,
}


def clearvoice_entry(model: str) -> str:
    """The weights-registry entry of a ClearerVoice model: ``clearvoice-<model, lower-case,
    dashes>``."""
    return "clearvoice-" + model.lower().replace("_", "-")


@contextlib.contextmanager
def _clearvoice_home(model: str, folder: Path) -> Iterator[None]:
    """A temporary working directory holding ``checkpoints/<model>`` -> ``folder``, with the
    Hugging Face hub offline: where ClearerVoice looks for its checkpoint, and a guarantee
    that it cannot download one."""
    cwd = os.getcwd()
    saved = os.environ.get("HF_HUB_OFFLINE")
    with tempfile.TemporaryDirectory(prefix="omni-clearvoice-") as home:
        (Path(home) / "checkpoints").mkdir()
        (Path(home) / "checkpoints" / model).symlink_to(folder.resolve(),
                                                        target_is_directory=True)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.chdir(home)
        try:
            yield
        finally:
            os.chdir(cwd)
            if saved is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = saved


def _check_clearvoice_loaded(net: Any, folder: Path, model: str) -> None:
    """Refuse a checkpoint that does not fill every tensor of ``net``.

    ClearerVoice copies only the checkpoint tensors whose name (with or without ``module.``)
    and shape match, and silently leaves the rest at their random initialisation; a wrong or
    truncated checkpoint would otherwise enhance with a half-random network.
    """
    from omni_core.weights import safe_torch_load

    name = (folder / "last_best_checkpoint").read_text().splitlines()[0].strip()
    ckpt = safe_torch_load(folder / name)
    ckpt = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    have = {k.removeprefix("module."): tuple(v.shape) for k, v in ckpt.items()
            if hasattr(v, "shape")}
    missing = [k for k, v in net.state_dict().items()
               if have.get(k.removeprefix("module.")) != tuple(v.shape)]
    if missing:
        raise OmniError(f"ClearerVoice checkpoint {folder / name} does not match {model}: "
                        f"{len(missing)} tensors missing or of another shape (first: "
                        f"{missing[0]})")


class Enhancer:
    """Optional speech enhancement with ClearerVoice (``clearvoice``); disabled = identity.

    Disabled by default. Enabled, it needs the release's checkpoint in the weights folder
    (registry entry ``clearvoice-<model>``, e.g. ``clearvoice-mossformergan-se-16k``; fetched
    with ``omni weights fetch``): a missing file is one :class:`WeightsError` before anything
    is imported. ClearerVoice looks for ``checkpoints/<model>/`` under the working directory
    and downloads from the hub only when ``last_best_checkpoint`` is not there; the model is
    therefore built in a temporary directory whose ``checkpoints/<model>`` points at the
    registry folder, which :func:`omni_core.weights.require` has checked is complete, so its
    download path is never taken (``HF_HUB_OFFLINE=1`` is also set while it builds), and a
    checkpoint that leaves any tensor of the network unfilled is refused. There is
    no debug twin: with ``debug`` or ``random`` weights enhancement is refused with a clear
    error. A missing package is one :class:`OmniError` saying how to install it. ClearerVoice
    reads files only, so each call goes through a temporary wav; the output is brought back to
    the input's sample rate and length so that timestamps stay valid.
    """

    #: the model enhancement uses unless told otherwise
    DEFAULT_MODEL = "MossFormerGAN_SE_16K"

    def __init__(self, enabled: bool = False, model: str = DEFAULT_MODEL,
                 weights: str | os.PathLike[str] | None = None, *,
                 registry: Any = None) -> None:
        self.enabled = bool(enabled)
        self.model_name = model
        self._model: Any = None
        folder = self.check(enabled, model, weights, registry=registry)
        if folder is None:
            return
        try:
            clearvoice = import_module("clearvoice")
        except ImportError as exc:
            raise OmniError(
                "speech enhancement is enabled but ClearerVoice is not installed: "
                "`pip install clearvoice` (https://github.com/modelscope/ClearerVoice-Studio), "
                "or turn enhancement off (audio.enhance: false)") from exc
        try:
            with _clearvoice_home(model, folder):
                self._model = clearvoice.ClearVoice(task="speech_enhancement",
                                                    model_names=[model])
        except Exception as exc:
            raise OmniError(f"ClearerVoice could not load {model}: {first_line(exc)}"
                            ) from exc
        _check_clearvoice_loaded(self._model.models[0].model, folder, model)

    @staticmethod
    def check(enabled: bool, model: str, weights: str | os.PathLike[str] | None, *,
              registry: Any = None) -> Path | None:
        """The checkpoint folder enhancement with ``model`` loads (None when disabled), or
        the one-line error it would fail with; loads nothing (a job's pre-flight)."""
        if not enabled:
            return None
        if model not in CLEARVOICE_RATES:
            raise OmniError(f"unknown ClearerVoice enhancement model {model!r}; choose one of "
                            f"{', '.join(CLEARVOICE_RATES)}")
        if weights is None or str(weights) in ("debug", "random"):
            raise OmniError(
                "speech enhancement has no debug twin: it needs ClearerVoice's checkpoint in a "
                f"weights folder (weights: DIR, `omni weights fetch {clearvoice_entry(model)}`)"
                ", or turn enhancement off (audio.enhance: false)")
        from omni_core.weights import require

        return require(clearvoice_entry(model), None, weights, registry=registry)

    def __call__(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The enhanced waveform (float32 (n,)); the input itself when disabled."""
        x = to_mono(waveform)
        if not self.enabled or len(x) == 0:
            return x
        from omni_core.media.audio import resample

        rate = CLEARVOICE_RATES[self.model_name]
        with temp_wav(resample(x, sample_rate, rate), rate) as path:
            out = self._model(input_path=str(path), online_write=False)
        y = resample(np.asarray(out, dtype=np.float32).reshape(-1), rate, sample_rate)
        y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
        return np.ascontiguousarray(y, dtype=np.float32)
