"""State-dict adapter between our model and the released checkpoints.

The DreamID-Omni release (``dreamid_omni.safetensors``) and Ovi's (``model.safetensors``,
``model_960x960*.safetensors``) store the fusion model's parameters under ``video_model.`` and
``audio_model.`` with the module names of their code; the release loads them strictly, so the
file's keys are exactly that layout. Ours uses the same names except one: each block's adaLN
table is the parameter ``blocks.N.modulation`` here and ``blocks.N.modulation.modulation``
there (it sits inside a small wrapper module). RoPE tables and the VAE statistics are not in
the file.

:func:`from_release` and :func:`to_release` rename keys both ways and refuse anything they do
not know; :func:`load_release` reads a file (safetensors, or a ``torch.load`` checkpoint
holding the state dict under ``module`` or ``app.model``) into a model built on the meta
device, so an 11.7B checkpoint is mapped without a second copy in memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from omni_core.errors import OmniError
from omni_core.weights import safe_torch_load

from .model import ModelArgs, OmniDiT

_MOD_RELEASE = re.compile(r"^(video_model|audio_model)\.blocks\.(\d+)\.modulation\.modulation$")
_MOD_OURS = re.compile(r"^(video_model|audio_model)\.blocks\.(\d+)\.modulation$")


def release_key(ours: str) -> str:
    m = _MOD_OURS.match(ours)
    return f"{ours}.modulation" if m else ours


def our_key(release: str) -> str:
    m = _MOD_RELEASE.match(release)
    return release[: -len(".modulation")] if m else release


def from_release(sd: Mapping[str, Any], expected: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Release keys -> ours. With ``expected`` (our state dict, or its keys and shapes), every
    key must map onto one of ours with the same shape and none of ours may be left without a
    value; the error lists the first few differences."""
    out = {our_key(k): v for k, v in sd.items()}
    if expected is not None:
        _check(out, expected, "release checkpoint")
    return out


def to_release(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Our keys -> the release's."""
    return {release_key(k): v for k, v in sd.items()}


def _check(got: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    shapes = [k for k in set(got) & set(expected)
              if tuple(got[k].shape) != tuple(expected[k].shape)]
    if extra or missing or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first: {', '.join(extra[:3])})")
        if shapes:
            k = sorted(shapes)[0]
            parts.append(f"{len(shapes)} of another shape (first: {k} "
                         f"{tuple(got[k].shape)} vs {tuple(expected[k].shape)})")
        raise OmniError(f"{what} does not fit the model: " + "; ".join(parts))


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A release checkpoint's tensors: ``.safetensors`` (memory-mapped), or a ``torch.load``
    file (``weights_only``) whose state dict is the top level, ``module`` or ``app.model``."""
    p = Path(path)
    if not p.is_file():
        raise OmniError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    obj = safe_torch_load(p, mmap=True)
    if isinstance(obj, dict) and "module" in obj:
        obj = obj["module"]
    elif isinstance(obj, dict) and isinstance(obj.get("app"), dict) and "model" in obj["app"]:
        obj = obj["app"]["model"]
    if not isinstance(obj, dict):
        raise OmniError(f"{p}: not a state dict")
    return obj


def load_release(path: str | os.PathLike[str], args: ModelArgs,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None
                 ) -> OmniDiT:
    """Our model holding a released checkpoint: built on the meta device, then the file's
    tensors assigned in place (cast to ``dtype`` if given, moved to ``device``)."""
    with torch.device("meta"):
        model = OmniDiT(args)
    sd = from_release(read_state_dict(path), model.state_dict())
    sd = {k: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point()
                  else v.dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model


def resolve_checkpoint(source: str, weights_root: str | os.PathLike[str] | None = None) -> Path:
    """Where a checkpoint ``source`` is: an existing file or folder, or a weights-registry
    entry (``dreamid-omni``, ``ovi``; ``ENTRY:FILE`` picks one of its files, default the
    first) in ``weights_root`` (default: the registry's folder). Never downloads: a missing
    file is one error naming the ``omni weights fetch`` command."""
    from omni_core.weights import WeightsError, load_registry, require

    p = Path(source)
    if p.exists():
        return p
    name, _, file = str(source).partition(":")
    registry = load_registry()
    if name not in registry.names():
        raise OmniError(f"checkpoint {source!r}: no such file or folder, and not a weights "
                        f"entry ({', '.join(registry.names())})")
    entry = registry.get(name)
    try:
        return require(name, file or entry.files[0].path, weights_root, registry=registry)
    except WeightsError as exc:
        raise OmniError(str(exc)) from None


def checkpoint_state(source: str, template: Mapping[str, torch.Tensor], which: str = "ema",
                     weights_root: str | os.PathLike[str] | None = None
                     ) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of ``source`` in our layout, and what they were: a training checkpoint
    folder (``{which}.safetensors``, ``which`` "ema" or "model", else ``model.safetensors``),
    or a release file or registry entry (:func:`resolve_checkpoint`) mapped with
    :func:`from_release` onto ``template`` (the model's state dict; meta tensors do)."""
    from safetensors.torch import load_file

    p = resolve_checkpoint(source, weights_root)
    if p.is_dir() and (p / "adapters.safetensors").is_file():
        return lora_checkpoint_state(p, template, which, weights_root)
    if p.is_dir():
        f = p / f"{which}.safetensors"
        f = f if f.is_file() else p / "model.safetensors"
        if not f.is_file():
            raise OmniError(f"{p}: no {which}.safetensors or model.safetensors (not a training "
                            "checkpoint)")
        return load_file(str(f)), f"checkpoint {f}"
    return from_release(read_state_dict(p), template), f"release checkpoint {p}"


def lora_checkpoint_state(folder: Path, template: Mapping[str, torch.Tensor], which: str = "ema",
                          weights_root: str | os.PathLike[str] | None = None
                          ) -> tuple[dict[str, torch.Tensor], str]:
    """A LoRA training checkpoint (``adapters.safetensors``: adapters only) as full weights:
    its base (the run's ``init``, itself possibly LoRA; else the seeded random init), the
    adapters (their EMA with ``which="ema"`` when kept) merged in."""
    import json

    from safetensors.torch import load_file

    from omni_core.config import from_dict

    from .flavors import build_model, get_flavor
    from .lora import LoRAConfig, apply_lora, load_adapters, merge_lora

    try:
        state = json.loads((folder / "trainer.json").read_text())
        conf = state["config"]
        lora = from_dict(LoRAConfig, conf["lora"])
        args = get_flavor(state["flavor"]).args
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OmniError(f"{folder}: a LoRA checkpoint without a readable trainer.json "
                        f"({exc}); it cannot say which base its adapters belong to") from None
    if conf.get("init"):
        base, what = checkpoint_state(conf["init"], template, conf.get("init_weights", "ema"),
                                      weights_root)
        model = build_model(args, "meta")
        model.load_state_dict(base, strict=True, assign=True)
    else:
        model = build_model(args, "cpu", seed=int(conf.get("seed", 0)))
        what = f"random init (seed {conf.get('seed', 0)})"
    apply_lora(model, lora)
    f = folder / "ema.safetensors"
    f = f if which == "ema" and f.is_file() else folder / "adapters.safetensors"
    load_adapters(model, load_file(str(f)))
    merge_lora(model)
    return {k: v.detach() for k, v in model.state_dict().items()}, f"{what} + LoRA {f}"


def merge_checkpoint(source: str, out: str | os.PathLike[str], which: str = "ema",
                     weights_root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``out/model.safetensors``: the full weights of a training checkpoint (a LoRA one
    merged), with its ``trainer.json`` (LoRA off), so that ``out`` serves as ``init`` or
    ``omni generate --checkpoint`` like any checkpoint folder."""
    import json

    from safetensors.torch import save_file

    from .flavors import build_model, get_flavor

    src = resolve_checkpoint(source, weights_root)
    state = json.loads((src / "trainer.json").read_text()) if (src / "trainer.json").is_file() \
        else None
    if state is None:
        raise OmniError(f"{source}: not a training checkpoint folder (no trainer.json)")
    template = build_model(get_flavor(state["flavor"]).args, "meta").state_dict()
    sd, what = checkpoint_state(str(src), template, which, weights_root)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dest / "model.safetensors"))
    state["config"] = {**state.get("config", {}), "lora": {
        **state.get("config", {}).get("lora", {}), "enabled": False}}
    state["merged_from"] = {"checkpoint": str(src), "weights": which, "what": what}
    (dest / "trainer.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    return dest
