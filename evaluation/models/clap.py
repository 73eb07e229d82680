"""LAION-CLAP (``laion_clap.CLAP_Module``): the audio and text towers of the CLAP metric.

The network, tokenizer and feature code are laion_clap's own (1.1.7), built offline
(``omni_core.hf_offline``); this module builds them from the weights folder, cuts the 10 s
window the non-fusion model sees (a seeded crop of longer audio, repeat-padding of shorter, as
``get_audio_features`` does upstream with an unseeded draw) and returns unit embeddings. Two
checkpoints (:data:`CHECKPOINTS`): av-benchmark's ``music_speech_audioset_epoch_15_esc_89.98.pt``
(HTSAT-base, no fusion) and Verse-Bench's ``630k-audioset-fusion-best.pt`` (HTSAT-tiny,
fusion). The protocol (preprocessing, text, cosine) is ``evaluation.metrics.clap``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

__all__ = [
    "CHECKPOINTS",
    "CLIP_SAMPLES",
    "ROBERTA_ENTRY",
    "ROBERTA_FILES",
    "SAMPLE_RATE",
    "TEXT_TOKENS",
    "ClapFusionModel",
    "ClapModel",
    "ClapWindow",
    "crop_or_repeat_pad",
    "model_class",
]

SAMPLE_RATE = 48_000
#: laion_clap's window: 10 s at 48 kHz (``max_len=480000`` in ``get_audio_embedding_from_data``).
CLIP_SAMPLES = 480_000
#: RoBERTa context used by ``CLAP_Module.tokenizer`` (padding="max_length", truncation).
TEXT_TOKENS = 77

#: The weights entry of RoBERTa's config and tokenizer files (the weights are in the CLAP file).
ROBERTA_ENTRY = "roberta-base"
ROBERTA_FILES = ("config.json", "vocab.json", "merges.txt")
_ROBERTA_HUB_ID = "roberta-base"  # what laion_clap asks the hub for
# Buffers older transformers saved and current ones rebuild (laion_clap drops the first too).
_NON_PERSISTENT = ("text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids")


# --------------------------------------------------------------------------------------------
# the model


class ClapModel(PretrainedComponent, nn.Module):
    """``laion_clap.CLAP_Module`` with HTSAT-base, no fusion (av-benchmark's CLAP).

    ``from_pretrained`` builds the module offline, serving ``roberta-base`` to laion_clap from
    the ``roberta-base`` weights entry (config + tokenizer; an empty weights file, since
    laion_clap 1.1.7 calls ``RobertaModel.from_pretrained`` and the CLAP checkpoint carries the
    whole text branch), then loads the CLAP state dict strictly, so no parameter stays random.
    ``debug`` builds the same classes with HTSAT-tiny and a tiny locally built RoBERTa.
    """

    weights_entry = "laion-clap-music-speech-audioset"
    weights_files = ("music_speech_audioset_epoch_15_esc_89.98.pt",)
    extra_weights = {ROBERTA_ENTRY: ROBERTA_FILES}
    amodel: ClassVar[str] = "HTSAT-base"
    enable_fusion: ClassVar[bool] = False
    debug_amodel: ClassVar[str] = "HTSAT-tiny"

    def __init__(self, module: nn.Module) -> None:
        nn.Module.__init__(self)
        self.clap = module  # laion_clap.CLAP_Module
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.clap.parameters()).device

    @property
    def audio_cfg(self) -> dict[str, Any]:
        return self.clap.model_cfg["audio_cfg"]

    # ---- constructors

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths[cls.weights_files[0]]
        text_files = {rel: paths[f"{ROBERTA_ENTRY}/{rel}"] for rel in ROBERTA_FILES}
        ckpt = load_torch_checkpoint(path)
        state = ckpt.get("state_dict", ckpt)
        if not isinstance(state, Mapping) or not state:
            raise WeightsError(f"{path}: not a CLAP checkpoint (no state_dict)")
        if next(iter(state)).startswith("module"):  # saved from DistributedDataParallel
            state = {k.removeprefix("module."): v for k, v in state.items()}
        with tempfile.TemporaryDirectory(prefix="omni-clap-") as tmp:
            roberta = Path(tmp) / "roberta-base"
            roberta.mkdir()
            for rel, src in text_files.items():
                shutil.copyfile(src, roberta / rel)
            from safetensors.torch import save_file

            save_file({}, str(roberta / "model.safetensors"), metadata={"format": "pt"})
            module = _build_module(Path(tmp) / "hub", {_ROBERTA_HUB_ID: roberta},
                                   cls.amodel, cls.enable_fusion, device)
        model = module.model
        expected = model.state_dict()
        state = {k: v for k, v in state.items() if k in expected or k not in _NON_PERSISTENT}
        load_state_dict_strict(model, state, f"{path} (laion_clap {cls.amodel}, fusion="
                               f"{cls.enable_fusion})")
        return cls(module).to(device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"amodel": cls.amodel, "roberta": "base"}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """HTSAT-tiny + a one-layer RoBERTa (768 wide, as laion_clap requires) with a locally
        trained tokenizer; ``text_assets`` may pass prebuilt ``build_clap_text_assets`` output.

        ``amodel`` picks the audio tower and ``roberta="base"`` a full-size roberta-base text
        tower (12 layers, 50265-token embedding; the tokenizer files stay the shared local
        ones, which laion_clap requires to be the same within a process).
        """
        from omni_core.hf_offline import save_tiny_roberta, shared_clap_text_assets

        with tempfile.TemporaryDirectory(prefix="omni-clap-debug-") as tmp:
            repos = dict(kw.get("text_assets") or shared_clap_text_assets(seed))
            if kw.get("roberta", "tiny") == "base":
                base = Path(tmp) / "roberta-base"
                shutil.copytree(repos[_ROBERTA_HUB_ID], base)
                save_tiny_roberta(base, 50265, num_hidden_layers=12, intermediate_size=3072,
                                  max_position_embeddings=514, seed=seed)
                repos[_ROBERTA_HUB_ID] = base
            torch.manual_seed(seed)
            module = _build_module(Path(tmp) / "hub", repos,
                                   kw.get("amodel", cls.debug_amodel), cls.enable_fusion, device)
        return cls(module).to(device)

    # ---- embeddings (laion_clap's own code paths)

    @torch.no_grad()
    def audio_embeddings(self, features: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
        """(N, 512) unit rows from ``get_audio_features`` dicts (``CLAP.get_audio_embedding``)."""
        self.clap.eval()
        out = self.clap.model.get_audio_embedding([dict(f) for f in features])
        return out.float().cpu().numpy()

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 512) unit rows (``CLAP_Module.get_text_embedding``: RoBERTa, 77 tokens)."""
        return np.asarray(self.clap.get_text_embedding(list(texts)), dtype=np.float32)

    def audio_embedding(self, x: np.ndarray, seed: int = 0
                        ) -> tuple[np.ndarray, int | None, int]:
        """The unit embedding of one clip (mono 48 kHz float32, preprocessed), the first sample
        of its 10 s crop (``None`` when not cropped) and its repeat-padding copies.

        Without fusion the model sees :func:`crop_or_repeat_pad` of the clip with ``seed``;
        the fusion model sees the whole clip (a global view plus three random 10 s chunks,
        drawn from numpy's global generator seeded with ``seed`` and restored afterwards).
        """
        from laion_clap.training.data import get_audio_features  # imported by the model already

        if self.enable_fusion:
            crop_start, n_repeat = None, max(1, CLIP_SAMPLES // x.size)
            with _seeded_global_numpy(seed):
                features = get_audio_features({}, torch.from_numpy(x), CLIP_SAMPLES,
                                              data_truncating="fusion", data_filling="repeatpad",
                                              audio_cfg=self.audio_cfg)
        else:
            window = crop_or_repeat_pad(x, CLIP_SAMPLES, seed)
            crop_start, n_repeat = window.crop_start, window.n_repeat
            features = get_audio_features({}, torch.from_numpy(window.waveform), CLIP_SAMPLES,
                                          data_truncating="rand_trunc", data_filling="repeatpad",
                                          audio_cfg=self.audio_cfg)
            features["longer"] = torch.tensor([crop_start is not None])  # as upstream
        return self.audio_embeddings([features])[0], crop_start, n_repeat


class ClapFusionModel(ClapModel):
    """``630k-audioset-fusion-best.pt``: HTSAT-tiny with feature fusion (Verse-Bench's CLAP)."""

    weights_entry = "laion-clap-630k-audioset-fusion"
    weights_files = ("630k-audioset-fusion-best.pt",)
    amodel = "HTSAT-tiny"
    enable_fusion = True


#: ``ClapOptions.checkpoint`` -> model class (its weights entry and architecture).
CHECKPOINTS: dict[str, type[ClapModel]] = {
    "music_speech_audioset": ClapModel,
    "630k_audioset_fusion": ClapFusionModel,
}


def model_class(checkpoint: str) -> type[ClapModel]:
    """The wrapper class of a checkpoint name of :data:`CHECKPOINTS`."""
    try:
        return CHECKPOINTS[checkpoint]
    except KeyError:
        raise OmniError(f"unknown CLAP checkpoint {checkpoint!r}; known: "
                        f"{', '.join(CHECKPOINTS)}") from None


def _build_module(cache: Path, repos: Mapping[str, Path], amodel: str, fusion: bool,
                  device: str) -> nn.Module:
    """``CLAP_Module`` constructed with ``repos`` served as a local hub (never the network)."""
    from transformers.utils import logging as hf_logging

    from omni_core.hf_offline import has_trained_vocab, offline_laion_clap

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the empty RoBERTa weights file is meant to be empty
    try:
        # required=(): only CLAP_Module's own tokenizer matters, checked below; the import-time
        # tokenizers of laion_clap.training.data are never used here.
        with offline_laion_clap(cache, repos, required=()) as laion_clap, \
                warnings.catch_warnings():
            # laion_clap's HTSAT calls torch.meshgrid without ``indexing``: its own concern,
            # nothing a user of the metric can act on
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            module = laion_clap.CLAP_Module(enable_fusion=fusion, device=device, amodel=amodel,
                                            tmodel="roberta")
    finally:
        hf_logging.set_verbosity(verbosity)
    if not has_trained_vocab(module.tokenize):
        raise WeightsError("laion_clap built an empty RoBERTa tokenizer: the roberta-base "
                           "vocab.json/merges.txt were not found")
    return module.eval()


# --------------------------------------------------------------------------------------------
# the 10 s window


@dataclass(frozen=True)
class ClapWindow:
    """The 10 s the non-fusion model sees, and how it was cut from the clip."""

    waveform: np.ndarray  # (CLIP_SAMPLES,) float32
    crop_start: int | None  # first sample of the crop (audio longer than 10 s), else None
    n_repeat: int  # whole copies tiled before zero-filling (1 when cropped or exact)


def crop_or_repeat_pad(x: np.ndarray, n: int = CLIP_SAMPLES, seed: int = 0) -> ClapWindow:
    """Exactly ``n`` samples: a seeded random crop of longer audio, repeat-padding of shorter.

    Crop: offset ``RandomState(seed).randint(0, len - n + 1)``, the draw upstream makes from the
    global generator. Padding (``data_filling="repeatpad"``): ``n // len`` whole copies, then
    zeros up to ``n``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        raise OmniError("CLAP: the audio is empty")
    if x.size > n:
        start = int(np.random.RandomState(seed).randint(0, x.size - n + 1))
        return ClapWindow(x[start:start + n].copy(), start, 1)
    reps = n // x.size
    out = np.zeros(n, dtype=np.float32)
    out[: reps * x.size] = np.tile(x, reps)
    return ClapWindow(out, None, reps)


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)
