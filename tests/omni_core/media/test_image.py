import numpy as np
import pytest

from omni_core.errors import MediaError
from omni_core.media import read_image, write_image


def test_png_round_trip_is_exact_and_jpeg_close(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    assert np.array_equal(read_image(write_image(tmp_path / "a/x.png", img)), img)
    smooth = np.broadcast_to(np.linspace(0, 255, 60, dtype=np.uint8)[None, :, None],
                             (40, 60, 3)).copy()
    back = read_image(write_image(tmp_path / "x.jpg", smooth)).astype(int)
    assert np.abs(back - smooth).mean() < 3
    assert not list(tmp_path.glob(".*tmp*"))


def test_grey_and_alpha_become_rgb(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((8, 8, 4), 50, np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "g.png").shape == (8, 8, 3)
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [50, 50, 50]


def test_errors(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(MediaError, match="not a readable image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(MediaError, match="no such file"):
        read_image(tmp_path / "none.png")
    with pytest.raises(MediaError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
