"""F5-TTS v1 Base zero-shot voice cloning (``f5-tts`` on PyPI) with the Vocos mel vocoder.

F5-TTS is a flow-matching text-to-mel model: the prompt's mel frames are kept, the frames after
them are generated for ``prompt_text + text`` by integrating a DiT's velocity field from noise
(Euler, 32 steps, classifier-free guidance 2, sway sampling -1), and Vocos
(``charactr/vocos-mel-24khz``) turns the new frames into 24 kHz audio.

We use the library's own classes (``f5_tts.model.cfm.CFM``, ``f5_tts.model.backbones.dit.DiT``,
``vocos.Vocos`` and its feature extractor / backbone / head) and its text front end
(``convert_char_to_pinyin``), but none of its loading helpers: ``f5_tts.infer.utils_infer`` and
``f5_tts.api`` fetch checkpoints with ``cached_path`` / ``hf_hub_download``, and
``Vocos.from_hparams`` imports whatever ``class_path`` a config names. Here every file comes
from the weights registry (:func:`omni_core.weights.require`), the Vocos config is read with
``yaml.safe_load`` and only the three expected classes are accepted, and the checkpoints go
through :func:`~omni_core.weights.load_torch_checkpoint` (safetensors / ``weights_only``).

Inference protocol (mirrors upstream's ``infer_process`` for one prompt):

* prompt: mono, loudness raised to RMS 0.1 when quieter (the output is scaled back by the same
  factor), resampled to 24 kHz, 50 ms of silence appended; the prompt text ends with a
  sentence mark and a space;
* text: ``prompt_text + text`` through upstream's character / pinyin front end, tokens from
  ``vocab.txt`` (unknown characters map to index 0, the space);
* duration (mel frames of 256 samples): ``ref + int(ref / len(prompt_text) * len(text) / speed)``
  with lengths in UTF-8 bytes and ``speed`` 0.3 for texts under 10 bytes (upstream's rule);
* text longer than upstream's per-batch budget (about 22 s of audio including the prompt) is
  split at sentence / clause marks; the pieces are joined with a 0.15 s linear cross-fade.

State-dict layout of the release (``F5TTS_v1_Base/model_1250000.safetensors``): the EMA weights
only, as ``ema_model.transformer.*`` plus the EMA bookkeeping scalars ``initted`` and ``step``.
Older ``.pt`` checkpoints hold the same under ``ema_model_state_dict``. Both load here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import (
    PretrainedComponent,
    load_state_dict_strict,
    load_torch_checkpoint,
)

SAMPLE_RATE = 24000
WEIGHTS_ENTRY = "f5-tts-v1-base"
CKPT_FILE = "model_1250000.safetensors"
VOCAB_FILE = "vocab.txt"
VOCOS_ENTRY = "vocos-mel-24khz"
VOCOS_CONFIG = "config.yaml"
VOCOS_FILE = "pytorch_model.bin"

#: prefix of the EMA weights in the released checkpoint, and the EMA bookkeeping keys
EMA_PREFIX = "ema_model."
EMA_BOOKKEEPING = ("initted", "step")
#: keys of the mel front end that old checkpoints carried (upstream drops them on load)
LEGACY_MEL_KEYS = ("mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window")

#: the only classes a Vocos ``config.yaml`` may name (upstream would import any class_path)
VOCOS_CLASSES = {
    "feature_extractor": "vocos.feature_extractors.MelSpectrogramFeatures",
    "backbone": "vocos.models.VocosBackbone",
    "head": "vocos.heads.ISTFTHead",
}

#: the debug model's vocabulary: index 0 is the space (upstream's unknown-character index)
DEBUG_VOCAB: tuple[str, ...] = tuple(
    " " + "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "0123456789"
    + ".,!?;:'\"-()"
)


# --------------------------------------------------------------------------------------------
# architecture


@dataclass(frozen=True)
class MelArch:
    """The mel front end shared by F5-TTS and Vocos (vocos-mel-24khz's settings)."""

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 100
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024


@dataclass(frozen=True)
class DiTArch:
    """``configs/F5TTS_v1_Base.yaml`` ``model.arch`` (dim_head 64 and dropout are DiT defaults)."""

    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    text_dim: int = 512
    text_mask_padding: bool = True
    qk_norm: str | None = None
    conv_layers: int = 4
    pe_attn_head: int | None = None


@dataclass(frozen=True)
class VocosArch:
    """vocos-mel-24khz's ``backbone`` (ConvNeXt) width, hidden width and depth."""

    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8


@dataclass(frozen=True)
class F5Arch:
    dit: DiTArch = field(default_factory=DiTArch)
    vocos: VocosArch = field(default_factory=VocosArch)
    mel: MelArch = field(default_factory=MelArch)

    @classmethod
    def base(cls) -> F5Arch:
        return cls()

    @classmethod
    def debug(cls) -> F5Arch:
        """Tiny widths and depths; the mel settings (24 kHz, hop 256, 100 bands) stay real so
        durations and output lengths follow the released model's rule exactly."""
        return cls(
            dit=DiTArch(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32,
                        conv_layers=1),
            vocos=VocosArch(dim=32, intermediate_dim=64, num_layers=2),
        )

    def vocos_config(self) -> dict[str, Any]:
        """The Vocos ``config.yaml`` content for this architecture (release layout)."""
        m = self.mel
        return {
            "feature_extractor": {"class_path": VOCOS_CLASSES["feature_extractor"], "init_args": {
                "sample_rate": m.sample_rate, "n_fft": m.n_fft, "hop_length": m.hop,
                "n_mels": m.n_mels, "padding": "center"}},
            "backbone": {"class_path": VOCOS_CLASSES["backbone"], "init_args": {
                "input_channels": m.n_mels, "dim": self.vocos.dim,
                "intermediate_dim": self.vocos.intermediate_dim,
                "num_layers": self.vocos.num_layers}},
            "head": {"class_path": VOCOS_CLASSES["head"], "init_args": {
                "dim": self.vocos.dim, "n_fft": m.n_fft, "hop_length": m.hop,
                "padding": "center"}},
        }


@dataclass(frozen=True)
class SamplingOptions:
    """upstream ``infer_process`` defaults."""

    nfe_steps: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float | None = -1.0
    speed: float = 1.0
    target_rms: float = 0.1
    cross_fade_s: float = 0.15
    #: upstream's per-batch audio budget (prompt + generated), which sets the chunk size
    max_batch_s: float = 22.0
    #: silence appended to the prompt (upstream's preprocessing adds 50 ms)
    prompt_pad_s: float = 0.05


# --------------------------------------------------------------------------------------------
# imports of the upstream library (lazy: importing this module stays cheap)


def _f5() -> Any:
    try:
        from f5_tts.model.backbones.dit import DiT
        from f5_tts.model.cfm import CFM
        from f5_tts.model.utils import convert_char_to_pinyin
    except ImportError as exc:
        raise OmniError(f"the f5-tts clone backend needs the f5-tts package ({exc}); it is in "
                        f"the suite's lock file: reinstall from requirements/lock.txt") from exc
    return CFM, DiT, convert_char_to_pinyin


def _vocos_classes() -> dict[str, type]:
    try:
        from vocos import Vocos
        from vocos.feature_extractors import MelSpectrogramFeatures
        from vocos.heads import ISTFTHead
        from vocos.models import VocosBackbone
    except ImportError as exc:
        raise OmniError(f"the f5-tts clone backend needs vocos ({exc})") from exc
    return {"Vocos": Vocos, "feature_extractor": MelSpectrogramFeatures,
            "backbone": VocosBackbone, "head": ISTFTHead}


def build_vocos(config: Mapping[str, Any], source: str = "vocos config") -> nn.Module:
    """``vocos.Vocos`` from a release-style config, accepting only :data:`VOCOS_CLASSES`."""
    classes = _vocos_classes()
    parts = {}
    for part, expected in VOCOS_CLASSES.items():
        spec = config.get(part) if isinstance(config, Mapping) else None
        if not isinstance(spec, Mapping) or spec.get("class_path") != expected:
            got = spec.get("class_path") if isinstance(spec, Mapping) else spec
            raise WeightsError(f"{source}: {part} must be {expected}, got {got!r}")
        args = spec.get("init_args") or {}
        if not isinstance(args, Mapping):
            raise WeightsError(f"{source}: {part}.init_args is not a mapping")
        parts[part] = classes[part](**dict(args))
    return classes["Vocos"](parts["feature_extractor"], parts["backbone"], parts["head"])


def read_vocab(path: str | os.PathLike[str]) -> dict[str, int]:
    """``vocab.txt``: one token per line (the newline removed), index = line number.

    Read line by line in text mode as upstream does, so tokens such as unusual Unicode
    spaces survive; index 0 must be the space (the index unknown characters fall back to).
    """
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line[:-1] if line.endswith("\n") else line] = i
    if vocab.get(" ") != 0:
        raise WeightsError(f"{path}: the first token must be the space (index 0)")
    return vocab


def write_vocab(vocab: Mapping[str, int], path: str | os.PathLike[str]) -> None:
    tokens = sorted(vocab, key=vocab.__getitem__)
    Path(path).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


def release_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Our ``CFM`` state dict -> the release's safetensors layout (EMA names + bookkeeping)."""
    out = {EMA_PREFIX + k: v.detach().clone().contiguous() for k, v in state.items()}
    out["initted"] = torch.tensor([True])
    out["step"] = torch.tensor([0])
    return out


def model_state_from_release(ckpt: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The release checkpoint (safetensors, or a ``.pt`` with ``ema_model_state_dict``) ->
    ``CFM`` keys: EMA prefix stripped, EMA bookkeeping and legacy mel keys dropped."""
    state = ckpt.get("ema_model_state_dict", ckpt)
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: 'ema_model_state_dict' is not a state dict")
    if not any(k.startswith(EMA_PREFIX) for k in state):
        raise WeightsError(f"{source}: no '{EMA_PREFIX}*' weights (not an F5-TTS EMA checkpoint)")
    out = {}
    for k, v in state.items():
        if k in EMA_BOOKKEEPING:
            continue
        name = k[len(EMA_PREFIX):] if k.startswith(EMA_PREFIX) else k
        if name not in LEGACY_MEL_KEYS:
            out[name] = v
    return out


# --------------------------------------------------------------------------------------------
# the wrapper


class F5TTS(PretrainedComponent, nn.Module):
    """F5-TTS v1 Base (``f5_tts`` CFM + DiT) with a Vocos vocoder: zero-shot cloning at 24 kHz.

    ``model`` is upstream's ``CFM`` (its ``transformer`` the DiT), ``vocoder`` is ``vocos.Vocos``.
    """

    weights_entry = WEIGHTS_ENTRY
    weights_files = (CKPT_FILE, VOCAB_FILE)
    extra_weights = {VOCOS_ENTRY: (VOCOS_CONFIG, VOCOS_FILE)}
    sample_rate = SAMPLE_RATE

    def __init__(self, arch: F5Arch, vocab: Mapping[str, int], *, vocos_config: Mapping[str, Any]
                 | None = None, options: SamplingOptions | None = None):
        nn.Module.__init__(self)
        CFM, DiT, _ = _f5()
        self.arch = arch
        self.vocab = dict(vocab)
        self.options = options or SamplingOptions()
        m = arch.mel
        dit = DiT(**asdict(arch.dit), text_num_embeds=len(self.vocab), mel_dim=m.n_mels)
        self.model = CFM(
            transformer=dit,
            mel_spec_kwargs=dict(n_fft=m.n_fft, hop_length=m.hop, win_length=m.win,
                                 n_mel_channels=m.n_mels, target_sample_rate=m.sample_rate,
                                 mel_spec_type="vocos"),
            odeint_kwargs=dict(method="euler"),
            vocab_char_map=self.vocab,
        )
        self.vocos_config = dict(vocos_config or arch.vocos_config())
        # Vocos is small and torchaudio's mel filter bank cannot be built on the meta device
        with torch.device("cpu"):
            self.vocoder = build_vocos(self.vocos_config)
        self.eval()

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        import yaml

        arch = kw.pop("arch", None) or F5Arch.base()
        options = kw.pop("options", None)
        if kw:
            raise TypeError(f"unexpected arguments: {sorted(kw)}")
        cfg_path = paths[f"{VOCOS_ENTRY}/{VOCOS_CONFIG}"]
        voc_path = paths[f"{VOCOS_ENTRY}/{VOCOS_FILE}"]
        try:
            vocos_cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise WeightsError(f"{cfg_path}: not valid YAML ({exc})") from exc
        vocab = read_vocab(paths[VOCAB_FILE])
        with torch.device("meta"):  # no 336M-parameter random init just to overwrite it
            obj = cls(arch, vocab, vocos_config=_checked(vocos_cfg, cfg_path), options=options)
        src = str(paths[CKPT_FILE])
        state = model_state_from_release(load_torch_checkpoint(paths[CKPT_FILE]), src)
        load_state_dict_strict(obj.model, state, src, assign=True)
        load_state_dict_strict(obj.vocoder, load_torch_checkpoint(voc_path), str(voc_path),
                               assign=True)
        obj._rebuild_buffers()
        obj = obj.to(device)
        with torch.no_grad():  # own, aligned memory (not views into the loaded files): the
            for t in obj.parameters():  # same weights then give bit-identical results
                t.data = t.data.clone()
        return obj.eval()

    def _rebuild_buffers(self) -> None:
        """Recompute the non-persistent buffers a meta-device build left empty (they are
        constants of the architecture, not checkpoint content)."""
        from f5_tts.model.modules import precompute_freqs_cis

        te = self.model.transformer.text_embed
        if getattr(te, "extra_modeling", False):
            te.freqs_cis = precompute_freqs_cis(self.arch.dit.text_dim, te.precompute_max_pos)
        self.model.mel_spec.dummy = torch.tensor(0)
        rot = self.model.transformer.rotary_embed
        if rot.inv_freq.is_meta:
            with torch.device("cpu"):
                fresh = type(rot)(self.arch.dit.dim_head)
            for name, buf in fresh.named_buffers():
                setattr(rot, name, buf)
        for name, buf in list(self.named_buffers()):
            if buf.is_meta:
                raise WeightsError(f"buffer {name} was not restored after loading")

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"arch": F5Arch.base(), "vocab": None}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        arch = kw.pop("arch", None) or F5Arch.debug()
        vocab = kw.pop("vocab", None)
        options = kw.pop("options", None)
        if kw:
            raise TypeError(f"unexpected arguments: {sorted(kw)}")
        if vocab is None:
            # real size: upstream's vocab.txt when the package ships it, else the debug list
            vocab = _packaged_vocab() if arch == F5Arch.base() else None
        vocab = vocab or {c: i for i, c in enumerate(DEBUG_VOCAB)}
        obj = cls(arch, vocab, options=options)
        with torch.no_grad():  # upstream zero-inits the output layers: make them do something
            dit = obj.model.transformer
            for lin in [b.attn_norm.linear for b in dit.transformer_blocks] + [
                    dit.norm_out.linear, dit.proj_out]:
                lin.weight.normal_(0.0, 0.02)
                lin.bias.normal_(0.0, 0.02)
        return obj.to(device).eval()

    # -- inference ----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokens(self, text: str) -> list[str]:
        """Upstream's text front end (characters; pinyin with tones for Chinese)."""
        return _f5()[2]([text])[0]

    def prompt_frames(self, n_samples_24k: int) -> int:
        """Mel frames of a 24 kHz prompt (including :attr:`SamplingOptions.prompt_pad_s`)."""
        pad = int(round(self.options.prompt_pad_s * SAMPLE_RATE))
        return (n_samples_24k + pad) // self.arch.mel.hop

    def duration_frames(self, prompt_frames: int, prompt_text: str, text: str) -> int:
        """Upstream's duration rule: total frames (prompt + generated) for ``text``."""
        ref_bytes = max(1, len(prompt_text.encode("utf-8")))
        gen_bytes = len(text.encode("utf-8"))
        speed = 0.3 if gen_bytes < 10 else self.options.speed
        return prompt_frames + int(prompt_frames / ref_bytes * gen_bytes / speed)

    def chunks(self, text: str, prompt_text: str, prompt_seconds: float) -> list[str]:
        """``text`` split so that each piece fits upstream's per-batch budget."""
        o = self.options
        budget = int(len(prompt_text.encode("utf-8")) / max(prompt_seconds, 1e-3)
                     * (o.max_batch_s - prompt_seconds) * o.speed)
        return split_text(text, max(budget, 1))

    @torch.inference_mode()
    def clone(self, text: str, prompt_wav: np.ndarray, prompt_rate: int, prompt_text: str,
              seed: int = 0) -> np.ndarray:
        """``text`` in the voice of ``prompt_wav`` (whose words are ``prompt_text``): float32
        mono at 24 kHz; the same inputs and seed give the same samples on one device."""
        from omni_core.media.audio import resample

        o = self.options
        text = text.strip()
        if not text:
            raise OmniError("nothing to say: empty text")
        wav = np.asarray(prompt_wav, dtype=np.float32)
        if wav.ndim == 2:
            wav = wav.mean(axis=1)
        if wav.ndim != 1 or wav.size == 0:
            raise OmniError(f"prompt must be a non-empty mono waveform, got shape {wav.shape}")
        if not np.all(np.isfinite(wav)):
            raise OmniError("prompt waveform has non-finite samples")
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
        gain = o.target_rms / rms if 0.0 < rms < o.target_rms else 1.0
        wav = resample(wav * gain, int(prompt_rate), SAMPLE_RATE)
        wav = np.concatenate([wav, np.zeros(int(round(o.prompt_pad_s * SAMPLE_RATE)),
                                            np.float32)])
        ptext = _prompt_text(prompt_text)
        pieces = self.chunks(text, ptext, wav.size / SAMPLE_RATE)
        cond = torch.from_numpy(wav).to(self.device)[None]
        ref = wav.size // self.arch.mel.hop
        dtype = next(self.model.parameters()).dtype
        outs = []
        dev = self.device
        cuda = [dev.index or 0] if dev.type == "cuda" else []
        for i, piece in enumerate(pieces):
            total = self.duration_frames(ref, ptext, piece)
            with torch.random.fork_rng(devices=cuda):  # upstream seeds the global generator
                mel, _ = self.model.sample(
                    cond=cond.to(dtype), text=[self.tokens(ptext + piece)], duration=total,
                    steps=o.nfe_steps, cfg_strength=o.cfg_strength,
                    sway_sampling_coef=o.sway_sampling_coef, seed=seed + i)
            new = mel.float()[:, ref:, :].permute(0, 2, 1)
            audio = self.vocoder.decode(new.to(next(self.vocoder.parameters()).dtype))
            outs.append(audio.float()[0].cpu().numpy() / gain)
        return cross_fade(outs, int(o.cross_fade_s * SAMPLE_RATE)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# helpers


def _checked(cfg: Any, path: Path) -> dict[str, Any]:
    if not isinstance(cfg, dict):
        raise WeightsError(f"{path}: expected a mapping with feature_extractor/backbone/head")
    return cfg


def _packaged_vocab() -> dict[str, int] | None:
    """The release vocabulary shipped inside the f5-tts wheel (``infer/examples/vocab.txt``,
    the same 2545 tokens as ``F5TTS_v1_Base/vocab.txt``), or ``None``."""
    try:
        from importlib.resources import files

        p = files("f5_tts").joinpath("infer/examples/vocab.txt")
        return read_vocab(str(p)) if p.is_file() else None
    except (ImportError, OSError, WeightsError):
        return None


def _prompt_text(text: str) -> str:
    """Upstream's prompt-text preparation: ends with a sentence mark and a space."""
    t = text.strip()
    if not t:
        raise OmniError("the prompt's transcript is empty: F5-TTS needs the prompt's words")
    if t.endswith("。"):
        return t
    if not t.endswith("."):
        t += "."
    return t + " "


_SPLIT = re.compile(r"(?<=[.!?;:,。！？；：，、])\s*")


def split_text(text: str, max_bytes: int) -> list[str]:
    """Pieces of at most ``max_bytes`` UTF-8 bytes, cut after sentence / clause marks (and at
    spaces, then anywhere, when one clause is still too long); pieces keep their marks."""
    parts = [p for p in _SPLIT.split(text.strip()) if p]
    out: list[str] = []
    cur = ""
    for p in parts:
        for piece in _hard_split(p, max_bytes):
            cand = f"{cur} {piece}" if cur else piece
            if len(cand.encode("utf-8")) <= max_bytes:
                cur = cand
            else:
                if cur:
                    out.append(cur)
                cur = piece
    if cur:
        out.append(cur)
    return out or [text.strip()]


def _hard_split(p: str, max_bytes: int) -> list[str]:
    if len(p.encode("utf-8")) <= max_bytes:
        return [p]
    words, out, cur = p.split(" "), [], ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if len(cand.encode("utf-8")) <= max_bytes or not cur:
            cur = cand
        else:
            out.append(cur)
            cur = w
    if cur:
        out.append(cur)
    return out


def cross_fade(waves: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Join ``waves`` with an ``n``-sample linear cross-fade (shorter when a piece is short)."""
    out = np.asarray(waves[0], dtype=np.float32)
    for w in waves[1:]:
        w = np.asarray(w, dtype=np.float32)
        k = min(n, out.size, w.size)
        if k <= 0:
            out = np.concatenate([out, w])
            continue
        ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
        mid = out[-k:] * (1.0 - ramp) + w[:k] * ramp
        out = np.concatenate([out[:-k], mid, w[k:]])
    return out


def save_release_layout(tts: F5TTS, root: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``tts`` in the release file layout under ``root`` (for tests and for sharing a
    fine-tuned model): ``f5-tts-v1-base/{model_1250000.safetensors,vocab.txt}`` and
    ``vocos-mel-24khz/{config.yaml,pytorch_model.bin}``."""
    import yaml
    from safetensors.torch import save_file

    root = Path(root)
    f5, voc = root / WEIGHTS_ENTRY, root / VOCOS_ENTRY
    f5.mkdir(parents=True, exist_ok=True)
    voc.mkdir(parents=True, exist_ok=True)
    save_file(release_state_dict(tts.model.state_dict()), str(f5 / CKPT_FILE))
    write_vocab(tts.vocab, f5 / VOCAB_FILE)
    (voc / VOCOS_CONFIG).write_text(yaml.safe_dump(tts.vocos_config, sort_keys=False),
                                    encoding="utf-8")
    torch.save({k: v.detach().clone() for k, v in tts.vocoder.state_dict().items()},
               voc / VOCOS_FILE)
    return {"f5": f5, "vocos": voc}
