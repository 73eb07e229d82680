"""Reading torch zip archives (TorchScript included) without executing pickled code.

OpenAI ships ``ViT-L-14.pt`` as a TorchScript archive, which ``torch.load(weights_only=True)``
refuses, and training checkpoints (ViCLIP's) may pickle config objects next to the weights.
:func:`read_torch_archive` / :func:`torchscript_state_dict` read the tensors of such a file with
a restricted unpickler that never imports or calls anything outside a short allow-list:
TorchScript classes and config objects become inert records (:class:`ArchiveObject`).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from omni_core.errors import WeightsError

__all__ = [
    "ArchiveObject",
    "is_torchscript_archive",
    "read_torch_archive",
    "torchscript_state_dict",
]


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class ArchiveObject:
    """An inert stand-in for any class the archive names (TorchScript modules, config
    objects): it records the constructor arguments and the pickled state, and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _archive_class(qualname: str) -> type[ArchiveObject]:
    return type(qualname.rsplit(".", 1)[-1], (ArchiveObject,), {"qualname": qualname})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Sequence[int],
                    stride: Sequence[int], *_: Any) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _first(value: Any, *_: Any) -> Any:
    return value


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _first,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch", "device"): str,
}


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, source: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._source = zf, prefix, source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # new-style storages name a dtype
        return _archive_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise WeightsError(f"{self._source}: unsupported persistent record {pid!r}")
        _, kind, key, _location, numel = pid[:5]
        dtype = kind.dtype if isinstance(kind, _StorageType) else kind
        if not isinstance(dtype, torch.dtype):
            raise WeightsError(f"{self._source}: storage {key} has no known dtype ({kind!r})")
        if key not in self._storages:
            raw = bytearray(self._zf.read(f"{self._prefix}data/{key}"))
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if t.numel() < numel:
                raise WeightsError(f"{self._source}: storage {key} is truncated")
            self._storages[key] = t
        return self._storages[key]


def read_torch_archive(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``data.pkl`` of a torch zip archive (``torch.save`` >= 1.6 or TorchScript).

    Only tensor rebuilding and ``OrderedDict`` are real; every other class the pickle names
    becomes an :class:`ArchiveObject` and no function outside the allow-list is ever called,
    so this is as safe as ``weights_only=True`` while accepting TorchScript archives and
    checkpoints that also pickle config objects. Little-endian archives only.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint not found: {p}")
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            pkl = sorted((n for n in names if n.endswith("data.pkl") and n.count("/") == 1),
                         key=len)
            if not pkl:
                raise WeightsError(f"{p} is a zip file without a data.pkl: not a torch archive")
            prefix = pkl[0][: -len("data.pkl")]
            if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder") != b"little":
                raise WeightsError(f"{p}: big-endian torch archives are not supported")
            return _ArchiveUnpickler(zf.read(pkl[0]), zf, prefix, p).load()
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{p} is not a torch zip archive ({exc})") from exc
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot read checkpoint {p}: {exc}") from exc


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    state = obj.state if isinstance(obj, ArchiveObject) else obj
    if not isinstance(state, Mapping):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
        elif isinstance(value, ArchiveObject | Mapping):
            _collect(value, f"{prefix}{key}.", out, seen)


def torchscript_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript module archive, by dotted path.

    This is a superset of ``torch.jit.load(path).state_dict()`` (plain tensor attributes such
    as CLIP's text ``attn_mask`` are included too); callers pick the keys they need.
    """
    root = read_torch_archive(path)
    if not isinstance(root, ArchiveObject):
        raise WeightsError(f"{path} is not a TorchScript module archive")
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out, set())
    return out


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """True for a TorchScript zip (it carries ``code/`` and ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
