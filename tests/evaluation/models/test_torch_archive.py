"""Reading torch zip archives without running pickled code (the restricted unpickler)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

from evaluation.models.torch_archive import ArchiveObject, read_torch_archive


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch should_not_exist",))


def test_archive_reader_never_calls_pickled_callables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Boom()}, protocol=2))
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    obj = read_torch_archive(tmp_path / "evil.pt")
    assert isinstance(obj["x"], ArchiveObject)
    assert not (tmp_path / "should_not_exist").exists()
