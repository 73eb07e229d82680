"""Fixtures shared by the whole test tree."""

from __future__ import annotations

import http.server
import importlib.util
import json
import threading
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository root: real upstream checkpoints and data that the
    project may not ship (read in place, never copied; see its README files). Tests that read
    it skip, with this reason, only where it is absent (a user's clone); CI always has it."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the real checkpoints and data beside the clone)")
    return path


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory):
    """The sample corpus (seed 0), built once per test session; a CorpusSummary.

    Its files are under ``sample_corpus.out``; ground truth in ``.files_table``,
    ``.people_table`` and ``.turns_table``. Treat it as read-only.
    """
    from omni_core.samples import make_corpus

    return make_corpus(tmp_path_factory.mktemp("sample_corpus"), seed=0)


@dataclass
class TalkingFrames:
    """One talking clip of the sample corpus: ID-Sim's 4 frames (truncated linspace), the
    middle frame, and the truth's face and mouth boxes of its people."""

    file: str
    frames: np.ndarray
    mid: np.ndarray
    face_boxes: list[np.ndarray]
    mouth_boxes: list[np.ndarray]


@pytest.fixture(scope="session")
def talking_frames(sample_corpus) -> list[TalkingFrames]:
    """Decoded once per session for the face tests (detection, ID-Sim, SCRFD)."""
    import pandas as pd

    from omni_core.media import probe, read_frames, sample_indices

    files = pd.read_parquet(sample_corpus.files_table)
    people = pd.read_parquet(sample_corpus.people_table)
    out = []
    for row in files[files["kind"] == "talking"].itertuples():
        path = sample_corpus.out / row.file
        n = probe(path).n_frames
        frames = read_frames(path, [*sample_indices(n, 4, "linspace").tolist(), n // 2])
        who = people[people["file"] == row.file]
        out.append(TalkingFrames(row.file, frames[:-1], frames[-1],
                                 [np.asarray(b, np.float64) for b in who["face_box"]],
                                 [np.asarray(b, np.float64) for b in who["mouth_box"]]))
    return out


# --------------------------------------------------------------------------------------------
# small real files with the stream quirks of phone and edited footage


@dataclass
class QuirkyMedia:
    """Files built by :func:`quirky_media` (all small, all with real encoders)."""

    long_audio: Path  # 8 s of picture (25 fps), 30 s of sound (a steady tone)
    rotated: Path  # stored 96x64 (landscape) with a white block top left, display matrix 90
    rotated_stored: np.ndarray  # that video's first frame as stored
    late_audio: Path  # 3 s of picture; the sound starts OFFSET_S after it
    early_audio: Path  # 3 s of sound; the picture starts OFFSET_S after it
    tiny: Path  # 2x2 pixels, with sound
    still: Path  # a PNG named .mp4
    one_fps: Path  # 8 frames at 1 fps, with sound

    #: how far apart the streams of late_audio and early_audio start
    OFFSET_S = 0.48
    #: where a 20 ms 1 kHz burst lies in the sound of late_audio and early_audio, in seconds
    #: from the sound's own start
    BURST_S = 1.0


@pytest.fixture(scope="session")
def quirky_media(tmp_path_factory) -> QuirkyMedia:
    from omni_core.media import write_image, write_mp4
    from omni_core.media.ffmpeg import binary, run

    root = tmp_path_factory.mktemp("quirky_media")

    def ffmpeg(*args: Any) -> None:
        run([binary("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", *map(str, args)],
            what="quirky media fixture")

    def lavfi(graph: str) -> list[str]:
        return ["-f", "lavfi", "-i", graph]

    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-threads", "2", "-pix_fmt", "yuv420p"]
    ffmpeg(*lavfi("smptebars=size=64x48:rate=25:duration=8"),
           *lavfi("sine=frequency=220:sample_rate=16000:duration=30"), *h264, "-c:a", "aac",
           root / "long_audio.mp4")

    stored = np.full((64, 96, 3), 40, np.uint8)
    stored[:16, :24] = 255
    write_mp4(root / "landscape.mp4", np.stack([stored] * 25), 25,
              np.zeros(16000, np.float32), 16000, crf=0)
    ffmpeg("-i", root / "landscape.mp4", "-c", "copy", "-metadata:s:v", "rotate=90",
           root / "rotated.mp4")

    ffmpeg(*lavfi("smptebars=size=64x48:rate=25:duration=3"), *h264, root / "picture.mp4")
    burst = QuirkyMedia.BURST_S
    ffmpeg(*lavfi(f"aevalsrc=0.8*sin(2*PI*1000*t)*between(t\\,{burst}\\,{burst + 0.02}):"
                  "s=48000:d=3"), root / "sound.wav")
    offset = QuirkyMedia.OFFSET_S
    ffmpeg("-i", root / "picture.mp4", "-itsoffset", offset, "-i", root / "sound.wav",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", root / "late_audio.mp4")
    ffmpeg("-itsoffset", offset, "-i", root / "picture.mp4", "-i", root / "sound.wav",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", root / "early_audio.mp4")

    ffmpeg(*lavfi("testsrc=size=2x2:rate=25:duration=1"), *lavfi("sine=duration=1"),
           "-c:v", "libx264", "-pix_fmt", "yuv444p", "-c:a", "aac", root / "tiny.mp4")
    write_image(root / "still.png", np.full((48, 64, 3), 128, np.uint8))
    (root / "still.mp4").write_bytes((root / "still.png").read_bytes())
    ffmpeg(*lavfi("smptebars=size=64x48:rate=1:duration=8"), *lavfi("sine=duration=8"),
           *h264, "-c:a", "aac", root / "one_fps.mp4")
    return QuirkyMedia(
        long_audio=root / "long_audio.mp4", rotated=root / "rotated.mp4",
        rotated_stored=stored, late_audio=root / "late_audio.mp4",
        early_audio=root / "early_audio.mp4", tiny=root / "tiny.mp4",
        still=root / "still.mp4", one_fps=root / "one_fps.mp4")


# --------------------------------------------------------------------------------------------
# a real HTTP server on 127.0.0.1 with Range support and an "interrupt after N bytes" mode


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: int | None = None  # next GET sends this many bytes then closes the connection
    ignore_range: bool = False
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302)
    requests: list[dict[str, str | None]] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        state.requests.append(
            {"path": self.path, "range": rng, "auth": self.headers.get("Authorization")}
        )
        if self.path in state.redirects:
            self.send_response(302)
            self.send_header("Location", state.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and not state.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if state.drop_after is not None:
            n, state.drop_after = state.drop_after, None
            self.wfile.write(chunk[:n])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = ServerState()
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)




# --------------------------------------------------------------------------------------------
# the real S3 protocol on 127.0.0.1 (moto's server mode) with fake credentials


#: fake credentials set only while an S3 test runs; tests check the secret is never printed
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "OMNITESTKEYID0000000",
            "AWS_SECRET_ACCESS_KEY": "omni-fake-secret-never-printed-0123456789",
            "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3:
    endpoint: str
    made: list[str] = field(default_factory=list)

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(client_kwargs={"endpoint_url": self.endpoint},
                                 skip_instance_cache=True)

    def bucket(self) -> str:
        """A new empty bucket; its ``s3://`` URL."""
        import uuid

        name = f"omni-test-{uuid.uuid4().hex[:12]}"
        self.fs().mkdir(name)
        self.made.append(name)
        return f"s3://{name}"

    def upload(self, local: Path, url: str) -> None:
        """Every file of a local folder (or the one file) to ``url``."""
        fs = self.fs()
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for f in files:
            rel = "" if f == local else "/" + f.relative_to(local).as_posix()
            fs.put_file(str(f), url.removeprefix("s3://") + rel)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 for the session; its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(s3_server) -> Iterator[S3]:
    """For one module: fake AWS credentials and the endpoint in the standard variables
    (``AWS_ENDPOINT_URL``, which botocore and omni_core.storage honour), no profile or config
    file of the machine; an :class:`S3` that makes buckets."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in FAKE_AWS.items():
            mp.setenv(k, v)
        mp.setenv("AWS_ENDPOINT_URL", s3_server)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(k, raising=False)
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        yield S3(s3_server)


# --------------------------------------------------------------------------------------------
# ClearerVoice's own network with seeded random weights, in the release's checkpoint layout


def mossformergan_checkpoint(weights: Path, drop: int = 0) -> Path:
    """The release's layout (``last_best_checkpoint`` naming a ``.pt`` with a ``model`` dict)
    holding ClearerVoice's own MossFormerGAN_SE_16K network, random-initialised with a seed;
    ``drop`` leaves that many tensors out."""
    from types import SimpleNamespace

    import torch
    from clearvoice.models.mossformer_gan_se.generator import MossFormerGAN_SE_16K

    from omni_core.models.enhancer import clearvoice_entry

    torch.manual_seed(0)
    net = MossFormerGAN_SE_16K(SimpleNamespace(fft_len=400, mode="inference")).model
    state = dict(list(net.state_dict().items())[drop:])
    folder = weights / clearvoice_entry("MossFormerGAN_SE_16K")
    folder.mkdir(parents=True)
    (folder / "last_best_checkpoint").write_text("last_best_checkpoint.pt\n")
    torch.save({"model": state}, folder / "last_best_checkpoint.pt")
    return folder


# --------------------------------------------------------------------------------------------
# a real Ray head on 127.0.0.1 for job-submission tests


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[Any]:
    """A Ray head started with ``ray start --head`` on 127.0.0.1 (2 CPUs, GCS and dashboard on
    free ports); its :class:`ray.job_submission.JobSubmissionClient`. Stopped afterwards
    (``ray stop --force``: every Ray process of the machine)."""
    import os
    import subprocess
    import sys

    from ray.job_submission import JobSubmissionClient

    ray_bin = Path(sys.executable).with_name("ray")
    gcs, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1",
                    "--port", str(gcs), "--dashboard-host", "127.0.0.1",
                    "--dashboard-port", str(dash), "--num-cpus", "2", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=180)
    try:
        yield JobSubmissionClient(f"http://127.0.0.1:{dash}")
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)


def run_job(client: Any, argv: list[str], timeout_s: float = 240) -> str:
    """Submit ``argv`` as a job, wait for it to succeed; its logs. A job still running after
    ``timeout_s`` is stopped and the test fails with the end of its log (inside the test
    timeout, so the log is seen)."""
    import time

    from ray.job_submission import JobStatus

    job = client.submit_job(entrypoint=" ".join(argv))
    deadline = time.monotonic() + timeout_s
    while not (status := client.get_job_status(job)).is_terminal():
        if time.monotonic() > deadline:
            client.stop_job(job)
            pytest.fail(f"job did not finish in {timeout_s:g} s ({status}); its log ends:\n"
                        f"{client.get_job_logs(job)[-3000:]}")
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-2000:]
    return logs


@pytest.fixture(scope="session")
def bench_fixtures(sample_corpus, tmp_path_factory):
    """The one- and two-person benchmark fixtures in the released layout, with predictions
    (the corpus clips themselves); a benchmark.fixtures.Fixtures."""
    from benchmark.fixtures import build_fixtures

    return build_fixtures(sample_corpus.out, tmp_path_factory.mktemp("bench_fixtures"))


@dataclass
class StudyInputs:
    bench: Path
    #: model -> its prediction folder: the corpus clips, and a grey copy of them whose wav
    #: is a sibling file (a silent mp4), as generated predictions may be
    predictions: dict[str, Path]
    instances: Any  # the instances, paths absolute


@pytest.fixture(scope="session")
def study_inputs(bench_fixtures, tmp_path_factory) -> StudyInputs:
    import subprocess

    from benchmark.study.design import bench_inputs

    grey = tmp_path_factory.mktemp("grey_predictions")
    for mp4 in sorted(bench_fixtures.pred.glob("*.mp4")):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(mp4), "-vf",
                        "hue=s=0", "-an", str(grey / mp4.name)], check=True, timeout=120)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(mp4), "-vn",
                        str(grey / mp4.with_suffix(".wav").name)], check=True, timeout=120)
    instances, preds = bench_inputs(str(bench_fixtures.bench),
                                    [f"zeta-model={bench_fixtures.pred}", f"omega-model={grey}"])
    return StudyInputs(bench_fixtures.bench, preds, instances)


@pytest.fixture(scope="session")
def inpair_offline_run(sample_corpus, tmp_path_factory):
    """An in-pair curation run of the corpus's six talking videos on the lite faces and
    association (LBP cascade, ArcFace twin, mouth motion) with the annotations double for the
    audio stage (tests only: the downstream stages see the corpus's exact turns): six samples,
    twelve identities."""
    from omni_core.config import load_config
    from omni_core.ray_helpers import shutdown_ray
    from pipelines.inpair.config import InpairConfig
    from pipelines.inpair.dag import run_inpair

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("inpair_offline") / "run"
    cfg = load_config(InpairConfig, root / "configs" / "curate" / "inpair.yaml",
                      ["models=lite", "audio.backend=annotations", "ray.include_dashboard=false"])
    try:
        summary = run_inpair(sample_corpus.out / "talking", out, cfg, progress=False)
    finally:
        shutdown_ray()
    assert summary.counts["samples"] == 6
    return out


@pytest.fixture(scope="session")
def crosspair_matches(inpair_offline_run, tmp_path_factory):
    """The identity half of a cross-pair run over ``inpair_offline_run``: the job's own
    retrieval (pipelines.crosspair.identity, with configs/curate/crosspair-offline.yaml's
    operating point for the debug ArcFace) written as ``identity_matches.parquet``, as
    ``omni curate crosspair`` writes it, without cloning voices (minutes of espeak and GE2E
    that the benchmark build does not read). The folder."""
    from omni_core.config import load_config
    from omni_core.manifests import write_manifest
    from pipelines.crosspair.config import CrosspairConfig
    from pipelines.crosspair.identity import find_matches, load_database

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(CrosspairConfig, root / "configs" / "curate" / "crosspair-offline.yaml",
                      [])
    matches = find_matches(load_database([inpair_offline_run]), cfg.retrieval)
    out = tmp_path_factory.mktemp("crosspair_matches") / "run"
    write_manifest(matches.assign(reason=[r or None for r in matches.reason]),
                   "identity_matches", out / "identity_matches.parquet")
    return out


# ---------------------------------------------------------------------------------------
# a multimodal LLM judge: the OpenAI chat-completions protocol on 127.0.0.1


class _ChatStub(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions stub: POST /v1/chat/completions answers from a
    script (a string is the assistant's content, an int an HTTP status), records requests."""

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        st = self.server.st
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st["requests"].append({"path": self.path, "body": body,
                               "auth": self.headers.get("Authorization")})
        step = st["script"].pop(0) if st["script"] else st["default"]
        if callable(step):  # an answer computed from the request
            step = step(body)
        if isinstance(step, int):
            self.send_response(step)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": step}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


@contextmanager
def _chat_stub() -> Iterator[tuple[str, dict]]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChatStub)
    srv.st = {"requests": [], "script": [], "default": "0"}  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", srv.st  # type: ignore[attr-defined]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def judge():
    """(base_url, state) of a chat-completions stub on 127.0.0.1 (see _ChatStub)."""
    with _chat_stub() as stub:
        yield stub


@pytest.fixture(scope="module")
def chat_stub_module():
    """The same stub, shared by the tests of one module (e.g. one DAG run that calls it)."""
    with _chat_stub() as stub:
        yield stub


@pytest.fixture
def unpinned_registry():
    """``unpinned_registry(*names)``: the packaged weights manifest with the size and sha256
    of the named entries cleared, so that small stand-in files in the upstream format pass
    ``require`` (which checks both)."""
    import dataclasses

    from omni_core.weights import load_registry

    def make(*names: str):
        registry = load_registry()
        unknown = set(names) - {e.name for e in registry}
        assert not unknown, f"no such weights entries: {sorted(unknown)}"

        def free(entry):
            files = tuple(dataclasses.replace(f, size=None, sha256=None) for f in entry.files)
            return dataclasses.replace(entry, files=files)

        return type(registry)(tuple(free(e) if e.name in names else e for e in registry), "test")

    return make


@pytest.fixture(scope="module")
def face_analysis(model):
    """insightface's own ``FaceAnalysis`` on the ONNX files of the requesting module's
    ``model`` fixture (a FaceModel): the reference the face tests compare with."""
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name=str(model.folder), root=str(model.folder),
                       allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=0, det_size=(320, 320))
    return app


# --------------------------------------------------------------------------------------------
# HTML reports: a tiny DOM of what headless Chromium rendered, and its screenshots


@dataclass
class Node:
    """An element of a parsed page: enough DOM to find sections, rows and attributes."""

    tag: str
    attrs: dict[str, str]
    children: list[Any] = field(default_factory=list)  # Node | str

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Elements of ``tag`` (any when None) with these attribute values (``data_testid``
        means ``data-testid``)."""
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k) == v for k, v in want.items())]

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one {tag} {attrs}, found {len(found)}"
        return found[0]


_VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def parse_html(text: str) -> Node:
    """A page as a :class:`Node` tree (the root is ``#root``)."""
    import html.parser

    class Builder(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.root = Node("#root", {})
            self.stack = [self.root]

        def handle_starttag(self, tag, attrs):
            node = Node(tag, {k: v or "" for k, v in attrs})
            self.stack[-1].children.append(node)
            if tag not in _VOID:
                self.stack.append(node)

        def handle_startendtag(self, tag, attrs):
            self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

        def handle_endtag(self, tag):
            for i in range(len(self.stack) - 1, 0, -1):
                if self.stack[i].tag == tag:
                    del self.stack[i:]
                    return

        def handle_data(self, data):
            self.stack[-1].children.append(data)

    b = Builder()
    b.feed(text)
    b.close()
    return b.root


@dataclass
class Chromium:
    """Headless Chromium on local pages: the DOM after the page's scripts ran, or a PNG."""

    exe: str
    profile: Path

    def _run(self, page: Path, *args: str) -> Any:
        import subprocess

        return subprocess.run(
            [self.exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={self.profile}", "--virtual-time-budget=5000", *args,
             Path(page).resolve().as_uri()],
            capture_output=True, text=True, timeout=90, check=False)

    def console(self, page: Path, fragment: str = "", budget_ms: int = 8000
                ) -> tuple[str, Node, list[str]]:
        """The DOM after the page's scripts ran (``#fragment`` in the address), its
        :class:`Node` tree and the console lines it logged (a script error, a blocked resource
        or a policy violation each log one). Autoplay needs a gesture, as for a reader."""
        import subprocess

        url = Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")
        res = subprocess.run(
            [self.exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={self.profile}", f"--virtual-time-budget={budget_ms}",
             "--enable-logging=stderr", "--v=0", "--autoplay-policy=user-gesture-required",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0 and "<body" in res.stdout, res.stderr[-2000:]
        return (res.stdout, parse_html(res.stdout),
                [line for line in res.stderr.splitlines() if ":CONSOLE" in line])

    def dom(self, page: Path) -> tuple[str, Node]:
        """The serialised DOM once loaded (``--dump-dom``) and its :class:`Node` tree."""
        res = self._run(page, "--dump-dom")
        assert res.returncode == 0, res.stderr[-2000:]
        assert "<body" in res.stdout, res.stderr[-2000:]
        return res.stdout, parse_html(res.stdout)

    def screenshot(self, page: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
        """A PNG of the page's first ``width`` x ``height`` pixels."""
        res = self._run(page, f"--window-size={width},{height}", "--hide-scrollbars",
                        f"--screenshot={png}")
        assert res.returncode == 0 and png.is_file(), res.stderr[-2000:]
        return png


@pytest.fixture
def chromium(tmp_path) -> Chromium:
    """Headless Chromium (fails, not skips, without it: scripts/setup.sh installs it)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; scripts/setup.sh installs it")
    return Chromium(exe, tmp_path / "chromium-profile")


# --------------------------------------------------------------------------------------------
# a live page in headless Chromium, driven over the DevTools protocol (tests/test_devtools.py)

#: Run by ``python -c`` between a test and Chromium: a child subreaper, so that every Chromium
#: process is reaped here and none is left a zombie for an init that reaps late or never (a
#: container's PID 1): the zygotes outlive the browser (even after ``Browser.close``) and the
#: crash reporters daemonise at start. On SIGTERM, when the test process goes away (its stdin
#: closes) or when the browser exits, it kills Chromium's process group and every orphan
#: handed to it, and reaps them all.
_REAPER = r"""
import ctypes, os, signal, subprocess, sys, threading, time
try:
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except (AttributeError, OSError):
    pass
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, process_group=0)
def watch():  # unbuffered: a daemon thread in a buffered read aborts the interpreter's exit
    while os.read(0, 4096):
        pass
    stop.set()
threading.Thread(target=watch, daemon=True).start()
while not stop.is_set() and child.poll() is None:
    stop.wait(0.1)

def orphans():
    me = str(os.getpid())
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    yield int(d)
        except (OSError, IndexError):
            pass

deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    for kill, pid in [(os.killpg, child.pid)] + [(os.kill, p) for p in orphans()]:
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        break
    time.sleep(0.02)
os._exit(0)
"""


class DevToolsError(AssertionError):
    """A failed DevTools step: a JS exception, a protocol error, a timeout, a dead browser."""


class DevTools:
    """One page of a headless Chromium driven over the Chrome DevTools Protocol, with plain
    synchronous methods (the websocket lives on a private event loop in a daemon thread).

    Starts Chromium at construction (``with DevTools() as page: ...``); the browser's
    websocket comes from ``DevToolsActivePort`` in the profile folder; the page is a target of
    its own (flat session), with the Page, Runtime, Network and Log domains on, so that
    :meth:`requests` and :meth:`console` record from the start. Autoplay with sound needs no
    gesture. Every wait has a timeout and fails with :class:`DevToolsError` (an
    AssertionError) that ends with Chromium's log; :meth:`close` kills every Chromium process
    and reaps it (see ``_REAPER``).
    """

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--remote-debugging-port=0",
             "--autoplay-policy=no-user-gesture-required",
             # a headless page is never "in the background": timers and media run at speed
             "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
             "--disable-backgrounding-occluded-windows", "--disable-component-update",
             "--disable-sync", "--password-store=basic",
             # media plays as with speakers (unmuted, decoded, timed by the audio clock) into
             # Chromium's fake sink: no ALSA probing (slow, noisy log), never a sound
             "--disable-audio-output")

    def __init__(self, exe: str | None = None, profile: Path | None = None, *,
                 args: Sequence[str] = (), window: tuple[int, int] = (1280, 900),
                 timeout: float = 30.0) -> None:
        import asyncio
        import shutil
        import subprocess
        import sys
        import tempfile

        exe = exe or shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            raise DevToolsError("chromium is not installed; scripts/setup.sh installs it")
        self._tmp = None if profile is not None else Path(tempfile.mkdtemp(prefix="devtools-"))
        self.profile = profile if self._tmp is None else self._tmp / "profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)
        self.log = self.profile.parent / f"{self.profile.name}.log"  # Chromium's stderr
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        self._console: list[dict[str, Any]] = []
        self._loaded: set[str] = set()  # loaderIds whose document fired load
        self._navigated: list[str] = []  # loaderIds of the main frame's documents, in order
        self._pending: dict[int, Any] = {}
        self._next_id = 0
        self._dead: str | None = None
        self._closed = False
        self._session = self._ws = self._sid = self._cond = self._reader = None
        self._proc: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="devtools")
        self._thread.start()
        try:
            with open(self.log, "wb") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _REAPER, exe, *self.FLAGS,
                     f"--window-size={window[0]},{window[1]}",
                     f"--user-data-dir={self.profile}", *args, "about:blank"],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            url = self._wait_port(timeout)
            self._run(self._open(url, timeout), timeout, "open the page")
        except BaseException:
            self.close()
            raise

    # ---- the public, synchronous side

    @property
    def pid(self) -> int:
        """The reaper's pid: Chromium's processes are all its descendants while it runs."""
        return self._proc.pid

    def __enter__(self) -> DevTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def goto(self, url: str, timeout: float = 30) -> None:
        """Navigate the page to ``url`` and wait for its load event."""
        self._run(self._goto(url), timeout, f"goto {url}")

    def reload(self, timeout: float = 30) -> None:
        """Reload the page (as a user's reload) and wait for the new document's load event."""
        self._run(self._reload(), timeout, "reload")

    def eval(self, js: str, timeout: float = 30) -> Any:
        """The JSON value of ``js`` (an expression or statements, evaluated as in the console:
        top-level ``await`` works and a returned promise is awaited). A JS exception raises
        :class:`DevToolsError` with its text."""
        return self._run(self._eval(js, timeout), timeout, f"eval {_short(js)}")

    def wait_for(self, js: str, timeout: float = 30, poll: float = 0.1) -> Any:
        """Evaluate ``js`` every ``poll`` seconds until its value is truthy (as in JS); that
        value. A JS exception meanwhile (an element not there yet, a reload) counts as not
        yet; on timeout, :class:`DevToolsError` with the last value or error."""
        import math
        import time

        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                value = self.eval(js, timeout=max(0.5, deadline - time.monotonic()))
            except DevToolsError as e:
                if self._dead or self._closed:
                    raise
                last = e
            else:
                if not (value is None or value is False or value == "" or
                        (isinstance(value, int | float) and (value == 0 or math.isnan(value)))):
                    return value
                last = value
            if time.monotonic() + poll > deadline:
                raise DevToolsError(f"wait_for {_short(js)}: not truthy in {timeout:g} s; "
                                    f"last value: {last!r}")
            time.sleep(poll)

    def click(self, selector: str, timeout: float = 30) -> None:
        """A user's left click at the centre of the first element matching ``selector``
        (scrolled into view first), as real mouse events (Input.dispatchMouseEvent), so
        focus, ``isTrusted``, labels and default actions behave as for a person. Fails if no
        element matches, it has no size, or something else (not the element, its content or
        one of its labels) is on top at that point. Returns once the page has handled the
        events (its click and change handlers ran); a navigation they start is not waited
        for (:meth:`wait_for` what the next page shows)."""
        self._run(self._click(selector), timeout, f"click {selector!r}")

    def html(self, timeout: float = 30) -> str:
        """The document's ``outerHTML`` now (after the page's scripts)."""
        return self.eval("document.documentElement.outerHTML", timeout)

    def requests(self) -> list[dict[str, Any]]:
        """Every request the page made since start, in order (one per redirect hop; ``data:``
        URLs left out): ``url``, ``method``, ``type`` (Document, Media, Script, Fetch, ...),
        ``request_headers``, then once answered ``status``, ``headers`` (the response's) and
        ``mime``, ``finished`` (bool) and ``error`` (net::..., or None). Header names are in
        lower case."""
        import copy

        with self._lock:
            return copy.deepcopy(self._requests)

    def console(self) -> list[dict[str, Any]]:
        """What the page logged since start, in order: ``kind`` "console" (console.*; ``level``
        is log, error, warning, ...), "exception" (uncaught, ``level`` error) or "log" (the
        browser's own: a failed load, a violation), ``text``, ``url`` and ``line``."""
        import copy

        with self._lock:
            return copy.deepcopy(self._console)

    def cdp(self, method: str, params: dict[str, Any] | None = None,
            timeout: float = 30) -> dict[str, Any]:
        """A raw DevTools command on the page's session; its result."""
        return self._run(self._send(method, params or {}), timeout, method)

    def close(self) -> None:
        """Kill Chromium (every process of it, reaped) and stop the event loop; idempotent."""
        import asyncio
        import os
        import shutil
        import signal
        import subprocess

        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(3)
            except BaseException:  # a hung or broken socket: the kill below ends it
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
        if self._proc is not None:
            try:
                self._proc.send_signal(signal.SIGTERM)
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:  # the reaper hangs: kill its whole session
                for d in filter(str.isdigit, os.listdir("/proc")):
                    try:
                        if os.getsid(int(d)) == self._proc.pid:
                            os.kill(int(d), signal.SIGKILL)
                    except OSError:
                        pass
                self._proc.wait(5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- plumbing

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        noise = ("dbus/", "ALSA lib", "alsa_util", "unexpected operator", "DevTools listening")
        text = "\n".join(x for x in lines if x.strip() and not any(n in x for n in noise))
        return f"\nchromium's log ends:\n{text[-2000:]}" if text else ""

    def _run(self, coro: Any, timeout: float, what: str) -> Any:
        import asyncio

        if self._closed:
            coro.close()
            raise DevToolsError(f"{what}: the DevTools page is closed")
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        try:
            return fut.result(timeout + 5)
        except TimeoutError:
            fut.cancel()
            raise DevToolsError(f"{what}: no answer in {timeout:g} s{self._tail()}") from None
        except ConnectionError as e:
            raise DevToolsError(f"{what}: {e}{self._tail()}") from None

    def _wait_port(self, timeout: float) -> str:
        import time

        deadline = time.monotonic() + timeout
        port_file = self.profile / "DevToolsActivePort"
        while True:
            if self._proc.poll() is not None:
                raise DevToolsError(f"chromium exited before it listened{self._tail()}")
            try:
                lines = port_file.read_text().split()
            except FileNotFoundError:
                lines = []
            if (len(lines) == 2 and lines[0].isdigit()
                    and lines[1].startswith("/devtools/browser/")):
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            if time.monotonic() > deadline:
                raise DevToolsError(f"no DevToolsActivePort in {timeout:g} s{self._tail()}")
            time.sleep(0.05)

    async def _open(self, url: str, timeout: float) -> None:
        import asyncio
        import time

        import aiohttp

        self._cond = asyncio.Condition()
        self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        while True:  # the port file is written once the server listens; retry a refusal anyway
            try:
                self._ws = await self._session.ws_connect(url, max_msg_size=0, autoping=True)
                break
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        target = (await self._send("Target.createTarget", {"url": "about:blank"}, False))
        self._sid = (await self._send("Target.attachToTarget",
                                      {"targetId": target["targetId"], "flatten": True},
                                      False))["sessionId"]
        for method, params in [("Page.enable", {}),
                               ("Page.setLifecycleEventsEnabled", {"enabled": True}),
                               ("Runtime.enable", {}), ("Network.enable", {}),
                               ("Log.enable", {}), ("Inspector.enable", {})]:
            await self._send(method, params)

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, params: dict[str, Any], page: bool = True) -> Any:
        import asyncio

        if self._dead:
            raise ConnectionError(self._dead)
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if page:
            msg["sessionId"] = self._sid
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        try:
            try:
                await self._ws.send_str(json.dumps(msg))
            except Exception as e:  # the socket is closing: the browser went away
                raise ConnectionError(self._dead or f"the DevTools connection failed: {e}") from e
            return await fut
        except DevToolsError as e:
            raise DevToolsError(f"{method}: {e}") from None
        finally:
            self._pending.pop(msg["id"], None)

    async def _read(self) -> None:
        import aiohttp

        reason = "chromium closed the DevTools connection"
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    fut = self._pending.get(data["id"])
                    if fut is not None and not fut.done() and "error" in data:
                        err = data["error"]
                        fut.set_exception(DevToolsError(
                            f"{err.get('message')} {err.get('data', '')}".strip()))
                    elif fut is not None and not fut.done():
                        fut.set_result(data.get("result", {}))
                    continue
                method, params = data.get("method"), data.get("params", {})
                if self._sid is None:
                    continue
                gone = {"Target.detachedFromTarget": params.get("sessionId"),
                        "Inspector.targetCrashed": data.get("sessionId")}
                if method in gone and gone[method] == self._sid:
                    await self._fail(f"the page is gone ({method})")
                elif data.get("sessionId") == self._sid:
                    self._event(method, params)
                    async with self._cond:
                        self._cond.notify_all()
        except Exception as e:  # any failure ends the connection alike
            reason = f"the DevTools connection failed: {e!r}"
        finally:
            await self._fail(reason)

    async def _fail(self, reason: str) -> None:
        """Fail every pending command and wait now and later (the page or browser is gone)."""
        self._dead = self._dead or reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(self._dead))
        async with self._cond:
            self._cond.notify_all()

    async def _until(self, check: Any) -> Any:
        def ready() -> Any:
            if self._dead:
                raise ConnectionError(self._dead)
            return check()

        async with self._cond:
            return await self._cond.wait_for(ready)

    def _event(self, method: str, p: dict[str, Any]) -> None:
        with self._lock:
            if method == "Network.requestWillBeSent":
                if p["request"]["url"].startswith("data:"):
                    return
                old = self._by_id.get(p["requestId"])
                if old is not None and "redirectResponse" in p:
                    self._answer(old, p["redirectResponse"])
                    old["finished"] = True
                req = {"url": p["request"]["url"], "method": p["request"]["method"],
                       "type": p.get("type"), "request_headers": {
                           k.lower(): v for k, v in p["request"].get("headers", {}).items()},
                       "status": None, "headers": {}, "mime": None, "finished": False,
                       "error": None}
                self._requests.append(req)
                self._by_id[p["requestId"]] = req
            elif method == "Network.responseReceived":
                if (req := self._by_id.get(p["requestId"])) is not None:
                    self._answer(req, p["response"])
            elif method == "Network.loadingFinished":
                if (req := self._by_id.get(p["requestId"])) is not None:
                    req["finished"] = True
            elif method == "Network.loadingFailed":
                if (req := self._by_id.get(p["requestId"])) is not None:
                    req["finished"], req["error"] = True, p.get("errorText")
            elif method == "Runtime.consoleAPICalled":
                frame = (p.get("stackTrace") or {}).get("callFrames") or [{}]
                self._console.append({
                    "kind": "console", "level": p["type"],
                    "text": " ".join(_remote_text(a) for a in p.get("args", [])),
                    "url": frame[0].get("url"), "line": frame[0].get("lineNumber")})
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                self._console.append({
                    "kind": "exception", "level": "error",
                    "text": (d.get("exception") or {}).get("description") or d.get("text"),
                    "url": d.get("url"), "line": d.get("lineNumber")})
            elif method == "Log.entryAdded":
                e = p["entry"]
                self._console.append({"kind": "log", "level": e.get("level"),
                                      "text": e.get("text"), "url": e.get("url"),
                                      "line": e.get("lineNumber")})
            elif method == "Page.frameNavigated" and not p["frame"].get("parentId"):
                self._navigated.append(p["frame"]["loaderId"])
            elif method == "Page.lifecycleEvent" and p["name"] == "load":
                self._loaded.add(p["loaderId"])

    @staticmethod
    def _answer(req: dict[str, Any], response: dict[str, Any]) -> None:
        req["status"] = response.get("status")
        req["headers"] = {k.lower(): v for k, v in response.get("headers", {}).items()}
        req["mime"] = response.get("mimeType")

    async def _goto(self, url: str) -> None:
        res = await self._send("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise DevToolsError(f"goto {url}: {res['errorText']}")
        if res.get("loaderId"):  # none for a same-document (#fragment) navigation
            await self._until(lambda: res["loaderId"] in self._loaded)

    async def _reload(self) -> None:
        n = len(self._navigated)
        await self._send("Page.reload", {})
        loader = await self._until(lambda: len(self._navigated) > n and self._navigated[n])
        await self._until(lambda: loader in self._loaded)

    async def _eval(self, js: str, timeout: float) -> Any:
        # replMode (as the console): top-level await, and `let`/`const` may be declared again
        # by the next eval; but it hands back a completion value that is a promise unawaited,
        # so a promise is awaited here, and any other object is fetched by value
        # V8 stops a script still running (a busy loop) a little before the wait gives up, so
        # the page answers again; that stop comes back as a protocol error (or, on a loaded
        # machine, after the wait gave up)
        import time

        budget, start = max(timeout * 0.75, timeout - 1), time.monotonic()
        try:
            res = await self._send("Runtime.evaluate", {
                "expression": js, "awaitPromise": True, "replMode": True,
                "objectGroup": "eval", "timeout": int(budget * 1000)})
        except DevToolsError as e:
            if time.monotonic() - start >= budget * 0.9:
                raise DevToolsError(f"eval {_short(js)}: still running after {budget:.3g} s, "
                                    f"stopped ({e})") from None
            raise
        try:
            obj = res["result"]
            if "exceptionDetails" not in res and "objectId" in obj:
                if obj.get("subtype") == "promise":
                    res = await self._send("Runtime.awaitPromise", {
                        "promiseObjectId": obj["objectId"], "returnByValue": True})
                else:
                    res = await self._send("Runtime.callFunctionOn", {
                        "functionDeclaration": "function () { return this; }",
                        "objectId": obj["objectId"], "returnByValue": True})
        finally:
            await self._send("Runtime.releaseObjectGroup", {"objectGroup": "eval"})
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            text = (d.get("exception") or {}).get("description") or d.get("text")
            raise DevToolsError(f"JS exception in {_short(js)}: {text}")
        return _remote_value(res["result"])

    async def _click(self, selector: str) -> None:
        box = await self._eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: "center", inline: "center", behavior: "instant"}});
            const r = el.getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const hit = document.elementFromPoint(x, y);
            const ok = !!hit && (el.contains(hit) ||
                                 [...(el.labels || [])].some(l => l.contains(hit)));
            return {{x, y, w: r.width, h: r.height, ok,
                     hit: hit ? hit.outerHTML.slice(0, 200) : null}};
        }})()""", 10)
        if box is None:
            raise DevToolsError(f"click {selector!r}: no element matches")
        if not (box["w"] > 0 and box["h"] > 0):
            raise DevToolsError(f"click {selector!r}: the element has no size ({box})")
        if not box["ok"]:
            raise DevToolsError(f"click {selector!r}: something else is on top at "
                                f"({box['x']:.0f}, {box['y']:.0f}): {box['hit']}")
        for kind, buttons in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)]:
            await self._send("Input.dispatchMouseEvent", {
                "type": kind, "x": box["x"], "y": box["y"], "buttons": buttons,
                "button": "none" if kind == "mouseMoved" else "left",
                "clickCount": 0 if kind == "mouseMoved" else 1})


def _short(js: str) -> str:
    js = " ".join(js.split())
    return repr(js if len(js) <= 120 else js[:117] + "...")


def _remote_value(obj: dict[str, Any]) -> Any:
    """A Runtime.RemoteObject (returned by value) as Python."""
    if "unserializableValue" in obj:
        u = obj["unserializableValue"]
        return int(u[:-1]) if u.endswith("n") else float(u)  # NaN, Infinity, -0, 12n
    return obj.get("value")


def _remote_text(obj: dict[str, Any]) -> str:
    """A console argument as console.log prints it, roughly."""
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    return str(obj.get("unserializableValue") or obj.get("description") or obj.get("type"))


@pytest.fixture
def devtools(tmp_path) -> Iterator[DevTools]:
    """A page in a headless Chromium over the DevTools protocol (fails, not skips, without
    chromium: scripts/setup.sh installs it); closed, every process of it reaped, after."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; scripts/setup.sh installs it")
    with DevTools(exe, tmp_path / "devtools-profile") as page:
        yield page


def job_summary(job: str, stages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A ``summary.json`` of the common job shape (what every batch job writes), with
    plausible defaults for what ``fields`` does not set: items and timing from the stages,
    errors from their failed counts, a provenance with one checkpoint."""
    failed = sum(int(s.get("failed", 0)) for s in stages)
    first = stages[0].get("in", 0) if stages else 0
    compute = round(sum(float(s.get("compute_s", 0.0)) for s in stages), 3)
    setup = round(sum(float(s.get("setup_s", 0.0)) for s in stages), 3)
    data: dict[str, Any] = {
        "job": job, "out": f"/runs/{job}",
        "items": {"total": first, "done": first - failed, "skipped": 0, "failed": failed},
        "stages": stages,
        "errors_by_stage": {s["stage"]: s["failed"] for s in stages if s.get("failed")},
        "counts": {},
        "timing": {"wall_s": compute, "compute_s": compute, "setup_s": setup},
        "result_key": "0123456789abcdef0123456789abcdef",
        "details": {},
        "provenance": {
            "suite_version": "0.1.0", "git_commit": "3f2c1ab", "date": "2025-01-02T03:04:05Z",
            "python": "3.11.9", "host": "node-1", "argv": ["omni", job, "--out", "/runs"],
            "config": {"seed": 0, "ray": {"address": None}},
            "weights": {"mode": "debug", "folder": None, "checkpoints": [
                {"entry": "whisper", "file": "model.safetensors", "path": "/w/whisper/m.st",
                 "size": 1536, "mtime": 1_700_000_000.0, "sha256": "ab" * 32}]},
            "inputs": ["/data/a.mp4"]},
    }
    data.update(fields)
    return data


def stage_entry(name: str, n_in: int, n_out: int, failed: int, compute_s: float,
                setup_s: float = 0.0, actors: int = 1,
                steps: Sequence[tuple[str, int, int, int, float]] = ()) -> dict[str, Any]:
    """One ``stages`` entry of :func:`job_summary`; ``steps``: (step, in, out, failed, s)."""
    return {"stage": name, "in": n_in, "out": n_out, "failed": failed, "compute_s": compute_s,
            "setup_s": setup_s, "actors": actors,
            "steps": [{"step": s, "in": i, "out": o, "failed": f, "seconds": sec}
                      for s, i, o, f, sec in steps]}


# Real speech that ships inside installed wheels, for the lite models' tests:
# - pyannote.audio's ``sample.wav``: 30 s of a real two-person telephone call (16 kHz) with its
#   diarization (``sample.rttm``) and transcript (``sample.stm``);
# - f5-tts's example prompts: four real English voices (``basic_ref_en.wav``, whose transcript
#   is the ``ref_text`` of the package's ``basic.toml``, and ``main``/``town``/``country``
#   .flac of its multi-voice story example).
# (One conftest for the whole tree: a second one in a folder without ``__init__.py`` is
# imported as the same ``conftest`` module and hides this one's helpers from
# ``from conftest import ...``.)
@pytest.fixture(scope="module")
def one_torch_thread():
    """Small LSTM batches: on a busy 2-core box intra-op threads make every op wait for a
    descheduled worker (a 30 s clip's diarization takes 4 - 6 s instead of 0.3 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Recording:
    wav: np.ndarray  # 16 kHz mono float32
    rttm: list[tuple[str, float, float]]  # (speaker, start_s, end_s)
    stm: list[tuple[str, float, float, str]]  # (speaker, start_s, end_s, text)

    @property
    def duration(self) -> float:
        return len(self.wav) / 16000


@pytest.fixture(scope="session")
def sample_recording() -> Recording:
    import soundfile as sf

    from omni_core.samples.recording import parse_rttm, parse_stm, sample_dir

    d = sample_dir()
    wav, sr = sf.read(d / "sample.wav", dtype="float32")
    assert sr == 16000 and wav.ndim == 1
    wav.setflags(write=False)
    return Recording(wav, parse_rttm((d / "sample.rttm").read_text()),
                     parse_stm((d / "sample.stm").read_text()))


@dataclass(frozen=True)
class Voices:
    audio: dict[str, np.ndarray]  # name -> 16 kHz mono float32
    basic_text: str  # what basic_ref_en.wav says


def f5_examples() -> Path:
    """f5-tts's ``infer/examples`` folder (found without importing the package)."""
    spec = importlib.util.find_spec("f5_tts")
    assert spec is not None and spec.submodule_search_locations, "f5-tts is in the lock"
    return Path(next(iter(spec.submodule_search_locations))) / "infer" / "examples"


@pytest.fixture(scope="session")
def f5_voices() -> Voices:
    from omni_core.media.audio import load_audio

    root = f5_examples()
    files = {"basic": root / "basic" / "basic_ref_en.wav", "main": root / "multi" / "main.flac",
             "town": root / "multi" / "town.flac", "country": root / "multi" / "country.flac"}
    audio = {}
    for name, path in files.items():
        a = load_audio(path, 16000)
        a.setflags(write=False)
        audio[name] = a
    text = tomllib.loads((root / "basic" / "basic.toml").read_text())["ref_text"]
    return Voices(audio, text)


#: what f5-tts's Chinese prompt ``basic_ref_zh.wav`` says (``origin_text`` in its speech_edit.py)
F5_ZH_TEXT = "对，这就是我，万人敬仰的太乙真人。"
#: the part of pyannote's call that ``speech_bench`` uses as a two-person prediction
CALL_SLICE = (7.6, 17.9)


@dataclass(frozen=True)
class SpeechBench:
    instances: Path  # a bench_instances manifest
    pred: Path  # <instance_id>.mp4 (frames only) + <instance_id>.wav (the speech)


@pytest.fixture(scope="session")
def speech_bench(sample_recording, f5_voices, tmp_path_factory) -> SpeechBench:
    """Three R2AV instances whose predictions are real recorded speech with known words and
    voices, for the audio metrics (T-Sim, WER) on real models:

    - ``en_single`` (S): f5-tts's English prompt, its transcript as the ``<S>`` speech, and
      another real voice (f5's ``main.flac``) as the timbre reference;
    - ``call_two`` (M): ten seconds of pyannote's two-person telephone call (seven STM lines,
      both speakers), each line attributed to its speaker with its times; each speaker's
      reference is their own RTTM turns after 18 s (the same voice, other words);
    - ``zh_single`` (S): f5-tts's Chinese prompt with its Chinese transcript, the English
      prompt as reference.

    The videos are small black frames; the speech is the sibling wav.
    """
    from omni_core.captions import StructuredCaption
    from omni_core.manifests import write_manifest
    from omni_core.media import load_audio, write_mp4, write_wav

    sr = 16000
    out = tmp_path_factory.mktemp("speech_bench")
    rec, (a, b) = sample_recording, CALL_SLICE
    speakers = {"Diane": "speaker90", "Sheila": "speaker91"}  # STM name -> RTTM label
    lines = [(spk, s, e, t) for spk, s, e, t in rec.stm if s >= a - 0.1 and e <= b + 0.1]
    subject = {name: f"<sub{k}>" for k, name in enumerate(speakers, start=1)}
    call = StructuredCaption(scene="A telephone call.", joint=" ".join(
        f"{subject[spk]} says, <S>{t}<E>" for spk, _, _, t in lines))
    for spk, s, e, _ in lines:
        call.speaker_timestamps.setdefault(subject[spk], []).append(
            (round(max(s - a, 0.0), 3), round(e - a, 3)))
    refs = {name: np.concatenate([rec.wav[int(s * sr):int(e * sr)] for lab, s, e in rec.rttm
                                  if lab == label and s >= 18.0])
            for name, label in speakers.items()}
    zh = load_audio(f5_examples() / "basic" / "basic_ref_zh.wav", sr)

    def single(text: str) -> str:
        return StructuredCaption(scene="One person talking.",
                                 joint=f"<sub1> says, <S>{text}<E>").render()

    cases = {  # id: (split, speech, caption, references)
        "en_single": ("S", f5_voices.audio["basic"], single(f5_voices.basic_text),
                      [f5_voices.audio["main"]]),
        "call_two": ("M", rec.wav[int(a * sr):int(b * sr)], call.render(),
                     [refs["Diane"], refs["Sheila"]]),
        "zh_single": ("S", zh, single(F5_ZH_TEXT), [f5_voices.audio["basic"]]),
    }
    rows = []
    for iid, (split, speech, caption, voices) in cases.items():
        n_frames = max(2, int(len(speech) / sr * 5))
        write_mp4(out / "pred" / f"{iid}.mp4", np.zeros((n_frames, 32, 32, 3), np.uint8), 5)
        write_wav(out / "pred" / f"{iid}.wav", speech, sr)
        audio_refs = [str(write_wav(out / "refs" / f"{iid}_{k}.wav", v, sr))
                      for k, v in enumerate(voices)]
        rows.append({"instance_id": iid, "task": "r2av", "split": split, "caption": caption,
                     "image_refs": [], "audio_refs": audio_refs, "source_video": None,
                     "driving_audio": None})
    return SpeechBench(write_manifest(rows, "bench_instances", out / "instances.parquet"),
                       out / "pred")


# ---------------------------------------------------------------------------------------
# manifests of a resumed run


def assert_same_manifests(out, first):
    """Every table byte for byte, except the one documented column that records when a
    failure happened (``errors.time``, docs/curation.md): the errors table must be the
    same bytes once that column is set to one value."""
    import io

    import pyarrow.parquet as pq

    from omni_core.manifests import get_schema

    def pinned(data: bytes) -> bytes:
        import pandas as pd

        df = pd.read_parquet(io.BytesIO(data))
        df["time"] = pd.Timestamp("2000-01-01", tz="UTC")
        buf = io.BytesIO()
        pq.write_table(get_schema("errors").to_table(df), buf)  # as write_manifest does
        return buf.getvalue()

    for t, data in first.items():
        now = (out / f"{t}.parquet").read_bytes()
        if t == "errors":
            assert pinned(now) == pinned(data), t
        else:
            assert now == data, t
