from omni_core.doctor import collect
from omni_core.weights import load_registry


def test_report_covers_every_registry_entry(tmp_path):
    report = collect(tmp_path)
    reg = load_registry()
    assert [w.name for w in report.weights] == [e.name for e in reg.entries]
    assert all(w.state == "missing" for w in report.weights)
    assert all(w.how_to_get.startswith(f"omni weights fetch {w.name}") for w in report.weights)
    names = {c.name for c in report.packages}
    assert {"torch", "ray", "pyannote.audio", "openai-whisper", "insightface", "decord"} <= names
    assert not report.problems, report.problems
    assert report.gpu["torch_cuda_build"]  # the CUDA 13 build pinned for the GPU machines


def test_partial_and_present_states(tmp_path):
    reg = load_registry()
    entry = next(e for e in reg.entries if len(e.files) == 1 and not e.files[0].unpack)
    folder = tmp_path / entry.name
    folder.mkdir()
    (folder / (entry.files[0].path + ".part")).write_bytes(b"abc")
    states = {w.name: w.state for w in collect(tmp_path).weights}
    assert states[entry.name] == "partial"
