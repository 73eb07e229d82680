"""Model files that ship inside installed wheels: the base of the ``lite`` model wrappers.

Three real small models come with their PyPI packages and need no weights folder: Silero VAD
(``silero-vad``, :mod:`.vad`), Resemblyzer's GE2E speaker encoder (``resemblyzer``,
:mod:`.ge2e`) and PocketSphinx's US-English recogniser (``pocketsphinx``, :mod:`.sphinx`).
:class:`PackagedComponent` is a :class:`~omni_core.weights.PretrainedComponent` without a
weights entry whose :meth:`~PackagedComponent.weight_paths` finds those files inside the
installed package instead of the weights folder: ``from_pretrained`` / ``for_weights`` with
any folder load the packaged model (the folder is not read), ``debug`` still builds a tiny
random twin. A missing package is one :class:`~omni_core.errors.WeightsError` line naming the
pinned version to install.

Files are located with ``importlib.util.find_spec`` on the top-level package, which finds the
package folder without executing it: ``import resemblyzer`` fails without ``webrtcvad`` (left
out of the lock, docs/dependencies.md) and ``import silero_vad`` sets torch's global thread
count to 1 as a side effect; neither may happen here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from omni_core.errors import WeightsError
from omni_core.weights import PretrainedComponent, Registry

__all__ = ["PackagedComponent", "package_file", "package_version"]


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (``None`` when not installed)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_file(dist: str, module: str, relpath: str, pin: str | None = None) -> Path:
    """``<folder of top-level package module>/<relpath>`` of an installed wheel, found without
    importing the package; one :class:`WeightsError` line if the package or file is missing.

    ``pin``: the version the suite locks, quoted in the error (``pip install dist==pin``).
    """
    spec = importlib.util.find_spec(module)
    want = f"{dist}=={pin}" if pin else dist
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"{relpath} ships inside the {dist} wheel, which is not installed: "
                           f"pip install {want} (see requirements/lock.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the installed {dist} "
                           f"{package_version(dist) or ''}: reinstall {want}")
    return path


class PackagedComponent(PretrainedComponent):
    """A wrapper whose real model files come from an installed wheel (no weights entry).

    Subclasses set ``package_dist`` (the PyPI name), ``package_module`` (its top-level import
    name), ``package_pin`` (the locked version, for the error message) and ``package_files``
    (paths inside the package folder); ``_load`` receives them under those relative paths.
    """

    weights_entry: ClassVar[str | None] = None
    package_dist: ClassVar[str] = ""
    package_module: ClassVar[str] = ""
    package_pin: ClassVar[str | None] = None
    package_files: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def weight_paths(cls, root: str | os.PathLike[str] | None = None, *,
                     registry: Registry | None = None, **kw: Any
                     ) -> tuple[Mapping[str, Path], Path | None]:
        """The packaged files (``root`` and ``registry`` are not used: nothing is read from
        the weights folder) and the package folder."""
        paths = {rel: package_file(cls.package_dist, cls.package_module, rel, cls.package_pin)
                 for rel in cls.package_files}
        folder = next(iter(paths.values())).parent if paths else None
        return paths, folder

    def describe(self) -> str:
        if self.is_debug or self.variant != "pretrained":
            return super().describe()
        version = package_version(self.package_dist) or "?"
        return f"{self.package_dist} {version} (model files of the installed wheel)"
