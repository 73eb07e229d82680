"""Media on a report page: image thumbnails, waveforms, embedded audio/video, a contact sheet.

Everything is embedded (``data:`` URIs and inline SVG) because a report must stay one file
that opens anywhere, also from a bucket, with the page's Content-Security-Policy forbidding
any other source. To keep that file small, images are downsized JPEGs, audio is drawn as a
min/max envelope rather than embedded, and a media file is embedded only under a size cap.

A report with videos is a folder rather than one file (a data URI per video would make a page
of a few instances hundreds of megabytes): :func:`place_file` puts a media file into the
report's folder (a hard link when it can, else a copy), :func:`write_thumbnail` writes an
image's downsized JPEG there and :func:`write_poster` a video's first frame, :func:`linked_media`
is the player of such a file with a link relative to the page, and :data:`MEDIA_SCRIPT`
records on the page which players loaded (the page must be framed with ``page(...,
local_files=True)``).

A file that is missing or cannot be decoded never stops a report: the reader functions return
None and the HTML builders put a placeholder saying which file it was.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import shutil
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .page import esc, missing_box

#: containers a browser plays; what ``mimetypes`` lacks or names differently across systems
MEDIA_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac",
               ".ogg": "audio/ogg", ".oga": "audio/ogg", ".m4a": "audio/mp4",
               ".opus": "audio/ogg", ".mp4": "video/mp4", ".m4v": "video/mp4",
               ".webm": "video/webm", ".ogv": "video/ogg"}


def _jpeg(img: np.ndarray, max_px: int, quality: int) -> bytes | None:
    """A BGR image downsized to ``max_px`` on its longest side (never upscaled), as JPEG."""
    import cv2

    h, w = img.shape[:2]
    scale = min(1.0, max_px / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else None


def thumbnail_jpeg(path: str | os.PathLike[str], max_px: int, quality: int = 85
                   ) -> bytes | None:
    """The image as JPEG bytes, longest side at most ``max_px`` (never upscaled); None if the
    file is missing or not an image."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return _jpeg(img, max_px, quality)


def thumbnail_data_uri(path: str | os.PathLike[str], max_px: int, quality: int = 85
                       ) -> str | None:
    """A JPEG data URI of the image, longest side at most ``max_px`` (never upscaled); None if
    the file is missing or not an image."""
    data = thumbnail_jpeg(path, max_px, quality)
    if data is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    d = Path(dest)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.with_name(f".{d.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, d)


def write_thumbnail(src: str | os.PathLike[str], dest: str | os.PathLike[str], max_px: int,
                    quality: int = 85) -> bool:
    """Write the image's downsized JPEG (:func:`thumbnail_jpeg`) to ``dest`` atomically;
    False (nothing written) if ``src`` is missing or not an image."""
    data = thumbnail_jpeg(src, max_px, quality)
    if data is None:
        return False
    _write_bytes(dest, data)
    return True


def write_poster(video: str | os.PathLike[str], dest: str | os.PathLike[str], max_px: int,
                 quality: int = 85) -> bool:
    """Write a video's first frame, downsized, as a JPEG to ``dest``: the picture its player
    shows before it plays (and what a screenshot of the page shows). False (nothing written)
    if the video is missing or does not decode."""
    from omni_core.errors import OmniError
    from omni_core.media import read_frames

    try:
        frame = read_frames(video, [0])[0]
    except (OmniError, OSError, ValueError, IndexError):
        return False
    data = _jpeg(np.ascontiguousarray(frame[:, :, ::-1]), max_px, quality)
    if data is None:
        return False
    _write_bytes(dest, data)
    return True


def place_file(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> str:
    """Put ``src`` at ``dest`` inside a report folder, so the folder holds its media and can be
    moved or zipped: a hard link when both are on one filesystem (no bytes copied), else a
    copy. Returns "kept" (``dest`` already is that file, or a copy of the same size and
    modification time), "linked" or "copied". A missing ``src`` raises FileNotFoundError."""
    s, d = Path(src), Path(dest)
    st = s.stat()
    if d.exists():
        dt = d.stat()
        if os.path.samefile(s, d) or (dt.st_size, dt.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            return "kept"
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.with_name(f".{d.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(s, tmp)
        how = "linked"
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(s, tmp)
        how = "copied"
    os.replace(tmp, d)
    return how


def thumbnail(path: str | os.PathLike[str], *, max_px: int = 128, quality: int = 85,
              alt: str = "", testid: str = "thumbnail", shown_as: str | None = None) -> str:
    """An ``<img>`` of the image's thumbnail, or a placeholder naming the file (``shown_as``:
    how to name it there, e.g. its path relative to the run, default the path)."""
    uri = thumbnail_data_uri(path, max_px, quality)
    if uri is None:
        name = shown_as if shown_as is not None else os.fspath(path)
        return missing_box(f"image {name} is missing or unreadable", f"{testid}-missing")
    return f'<img data-testid="{esc(testid)}" src="{uri}" alt="{esc(alt)}">'


def read_mono(path: str | os.PathLike[str], max_s: float) -> tuple[np.ndarray, int] | None:
    """The first ``max_s`` seconds of an audio file mixed to mono, and its sample rate; None if
    missing or unreadable (``max_s`` <= 0 reads it all)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            frames = f.frames if f.frames > 0 else -1
            if max_s > 0 and frames > 0:
                frames = min(frames, int(max_s * f.samplerate))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
            return data.mean(axis=1), int(f.samplerate)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
        return None


def waveform_envelope(samples: np.ndarray, columns: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum of a mono signal (at most ``columns`` columns): what a
    waveform shows at any zoom, in a few hundred numbers instead of the samples."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not len(x):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    chunks = np.array_split(x, min(columns, len(x)))
    return (np.array([c.min() for c in chunks], np.float32),
            np.array([c.max() for c in chunks], np.float32))


def svg_waveform(mins: np.ndarray, maxs: np.ndarray, *, width: int = 240, height: int = 64,
                 label: str = "waveform") -> str:
    """The min/max envelope as one filled polygon around a centre line, normalised to its peak
    (the shape matters, not the level)."""
    n = len(mins)
    mid = height / 2
    peak = float(max(np.abs(mins).max(initial=0), np.abs(maxs).max(initial=0))) or 1.0
    amp = (height / 2 - 2) / peak
    xs = (np.arange(n) + 0.5) * width / max(n, 1)
    top = [f"{x:.1f},{mid - min(max(v, 0), peak) * amp - 0.5:.1f}"
           for x, v in zip(xs, maxs, strict=True)]
    bot = [f"{x:.1f},{mid - max(min(v, 0), -peak) * amp + 0.5:.1f}"
           for x, v in zip(xs[::-1], mins[::-1], strict=True)]
    return (f'<svg data-testid="waveform" class="wave" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'data-columns="{n}" role="img" aria-label="{esc(label)}">'
            f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" class="mid"/>'
            f'<polygon points="{" ".join(top + bot)}"/></svg>')


def waveform(path: str | os.PathLike[str], *, columns: int = 200, max_s: float = 60.0,
             label: str = "waveform") -> str | None:
    """The SVG waveform of an audio file's first ``max_s`` seconds; None if unreadable."""
    mono = read_mono(path, max_s)
    if mono is None:
        return None
    return svg_waveform(*waveform_envelope(mono[0], columns), label=label)


def media_type(path: str | os.PathLike[str]) -> str | None:
    """The MIME type of an audio or video file by its name; None for anything else."""
    suffix = Path(path).suffix.lower()
    kind = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0]
    return kind if kind and kind.split("/")[0] in ("audio", "video") else None


def media_data_uri(path: str | os.PathLike[str], max_bytes: int) -> str | None:
    """A data URI of an audio or video file of at most ``max_bytes``; None if it is missing,
    larger, or not audio/video."""
    kind = media_type(path)
    p = Path(path)
    try:
        if kind is None or not p.is_file() or p.stat().st_size > max_bytes:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    return f"data:{kind};base64," + base64.b64encode(data).decode("ascii")


def embedded_media(path: str | os.PathLike[str], *, max_bytes: int = 2_000_000,
                   testid: str = "media", shown_as: str | None = None) -> str:
    """An ``<audio>`` or ``<video>`` player holding the file, or a placeholder saying why it
    is not embedded (missing, not audio/video, or over ``max_bytes``: a page of a thousand
    clips must stay openable)."""
    name = shown_as if shown_as is not None else os.fspath(path)
    kind = media_type(path)
    if kind is None:
        return missing_box(f"{name} is not an audio or video file", f"{testid}-missing")
    p = Path(path)
    if not p.is_file():
        return missing_box(f"{name} is missing", f"{testid}-missing")
    uri = media_data_uri(p, max_bytes)
    if uri is None:
        return missing_box(f"{name} is larger than {max_bytes} bytes: not embedded",
                           f"{testid}-missing")
    tag = kind.split("/")[0]
    extra = ' width="320"' if tag == "video" else ""
    return (f'<{tag} data-testid="{esc(testid)}" controls preload="metadata"{extra} '
            f'src="{uri}" title="{esc(name)}"></{tag}>')


def href(path: str | os.PathLike[str], page_dir: str | os.PathLike[str]) -> str:
    """The URL of ``path`` relative to a page in ``page_dir``, percent-encoded (a file name
    with ``#``, ``?`` or spaces still resolves; escape it with :func:`esc` in an attribute)."""
    rel = os.path.relpath(os.fspath(path), os.fspath(page_dir))
    return urllib.parse.quote(Path(rel).as_posix())


def linked_media(path: str | os.PathLike[str], page_dir: str | os.PathLike[str], *,
                 testid: str = "media", shown_as: str | None = None, width: int = 320,
                 poster: str | os.PathLike[str] | None = None) -> str:
    """An ``<audio>`` or ``<video>`` player of a file inside the report folder (see
    :func:`place_file`), linked relative to the page in ``page_dir`` (a video shows the image
    ``poster`` until played, see :func:`write_poster`); a placeholder naming the file when it
    is missing or not audio/video (never a broken player)."""
    name = shown_as if shown_as is not None else os.fspath(path)
    kind = media_type(path)
    if kind is None:
        return missing_box(f"{name} is not an audio or video file", f"{testid}-missing")
    if not Path(path).is_file():
        return missing_box(f"{name} is missing", f"{testid}-missing")
    tag = kind.split("/")[0]
    extra = f' width="{int(width)}"' if tag == "video" else ""
    if tag == "video" and poster is not None and Path(poster).is_file():
        extra += f' poster="{esc(href(poster, page_dir))}"'
    return (f'<{tag} data-testid="{esc(testid)}" controls preload="metadata"{extra} '
            f'src="{esc(href(path, page_dir))}" title="{esc(name)}"></{tag}>')


#: records on ``<body>`` how the page's players fared once their metadata loaded or failed:
#: ``data-media-loaded="<loaded>/<players>"``, ``data-media-failed="<n>"``, and on each player
#: ``data-media-state="loaded|failed"`` (a headless browser reads them from the DOM)
MEDIA_SCRIPT = (
    "(function(){var m=document.querySelectorAll('audio[src],video[src]'),ok=0,bad=0;"
    "function put(){document.body.dataset.mediaLoaded=ok+'/'+m.length;"
    "document.body.dataset.mediaFailed=String(bad);}"
    "function done(e,good){if(e.dataset.mediaState){return;}"
    "e.dataset.mediaState=good?'loaded':'failed';if(good){ok++;}else{bad++;}put();}"
    "m.forEach(function(e){e.addEventListener('loadedmetadata',function(){done(e,true);});"
    "e.addEventListener('error',function(){done(e,false);});"
    "if(e.readyState>=1){done(e,true);}else if(e.error){done(e,false);}});put();})();")


def card(media: Sequence[str], lines: Sequence[str], *, testid: str = "card",
         attrs: Mapping[str, str] | None = None) -> str:
    """One contact-sheet card: media fragments side by side above caption lines (both already
    HTML: escape their data), with ``data-<key>`` attributes so a test can find it."""
    extra = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in (attrs or {}).items())
    return (f'<figure class="card" data-testid="{esc(testid)}"{extra}>'
            f'<div class="media">{"".join(media)}</div>'
            f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>")


def contact_sheet(cards: Sequence[str], total: int | None = None, what: str = "item(s)") -> str:
    """Cards in a wrapping grid, after a line saying how many there are (and that only the
    first were shown when ``total`` exceeds them)."""
    n = len(cards) if total is None else total
    shown = f", showing the first {len(cards)}" if len(cards) < n else ""
    return (f"<p>{n} {esc(what)}{shown}</p>"
            f'<div class="sheet" data-testid="sheet">{"".join(cards)}</div>')
