"""Speech enhancement with ClearerVoice: disabled is the identity; enabled, the checkpoint comes
from the weights registry (never the hub) and ClearerVoice's own network runs on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omni_core.errors import OmniError
from omni_core.media import load_audio
from omni_core.models.enhancer import Enhancer


@pytest.fixture(scope="module")
def clip(sample_corpus) -> np.ndarray:
    """A 3-person talking clip of the corpus, decoded at 16 kHz mono."""
    return load_audio(sample_corpus.out / "talking" / "talk04_3p.mp4", 16000)


def test_enhancer_disabled_is_the_identity_and_enabled_needs_clearvoice(clip):
    off = Enhancer()
    assert not off.enabled
    out = off(clip, 16000)
    assert out.dtype == np.float32 and np.array_equal(out, clip)
    assert np.array_equal(off(np.stack([clip, clip], axis=1)), clip)
    with pytest.raises(OmniError, match="unknown ClearerVoice enhancement model"):
        Enhancer(enabled=True, model="NoSuchModel")


def test_enhancer_loads_through_the_weights_registry_and_never_downloads(tmp_path, monkeypatch):
    import os

    from omni_core.errors import WeightsError
    from omni_core.models.enhancer import _clearvoice_home, clearvoice_entry

    entry = clearvoice_entry("MossFormerGAN_SE_16K")
    assert entry == "clearvoice-mossformergan-se-16k"
    for weights in (None, "debug", "random"):  # no debug twin: refused, with the way out
        with pytest.raises(OmniError, match="no debug twin") as err:
            Enhancer(enabled=True, weights=weights)
        assert "audio.enhance: false" in str(err.value)
    # a weights folder without the checkpoint: one line naming the file and the fetch command
    with pytest.raises(WeightsError) as err:
        Enhancer(enabled=True, weights=tmp_path)
    assert "last_best_checkpoint" in str(err.value)
    assert f"omni weights fetch {entry}" in str(err.value)
    # the checkpoint present: next comes the package, one line saying how to install it
    folder = tmp_path / entry
    folder.mkdir()
    (folder / "last_best_checkpoint").write_text("last_best_checkpoint.pt\n")
    (folder / "last_best_checkpoint.pt").write_bytes(b"weights")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "clearvoice", None)  # import clearvoice -> ImportError
        with pytest.raises(OmniError, match="pip install clearvoice"):
            Enhancer(enabled=True, weights=tmp_path)
    # where ClearerVoice looks: checkpoints/<model> under the working directory, hub offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    cwd = os.getcwd()
    with _clearvoice_home("MossFormerGAN_SE_16K", folder):
        assert os.getcwd() != cwd and os.environ["HF_HUB_OFFLINE"] == "1"
        seen = Path("checkpoints/MossFormerGAN_SE_16K/last_best_checkpoint").read_text()
        assert seen == "last_best_checkpoint.pt\n"
    assert os.getcwd() == cwd and os.environ["HF_HUB_OFFLINE"] == "0"


def test_enhancer_runs_clearvoices_network_from_the_weights_folder(tmp_path, clip, monkeypatch):
    """The real upstream path: ClearVoice builds MossFormerGAN_SE_16K, loads our checkpoint
    from the registry folder (never the hub) and enhances through its file interface."""
    from conftest import mossformergan_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the enhancer itself must turn the hub off
    folder = mossformergan_checkpoint(tmp_path)
    enh = Enhancer(enabled=True, weights=tmp_path)
    net = enh._model.models[0].model
    saved = torch.load(folder / "last_best_checkpoint.pt", weights_only=True)["model"]
    assert set(net.state_dict()) == set(saved)
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    x = clip[: 2 * 16000]
    y = enh(x, 16000)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    assert not np.allclose(y, x, atol=1e-3)  # the network, not a pass-through
    y8 = enh(x[::2].copy(), 8000)  # resampled to 16 kHz and back: same length out
    assert y8.shape == (16000,) and np.isfinite(y8).all()
    assert np.array_equal(enh(x, 16000), y)  # deterministic

    # a checkpoint that leaves tensors at random init is refused, not silently used
    with pytest.raises(OmniError, match="does not match MossFormerGAN_SE_16K: 3 tensors"):
        Enhancer(enabled=True, weights=mossformergan_checkpoint(tmp_path / "bad", drop=3)
                 .parent)
