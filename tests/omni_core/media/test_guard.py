"""The decode guard's hand-over of frames: they come back in shared memory the worker filled
(no copy), stay valid and writable for as long as the caller holds them, are reused only once
let go of, and nothing outlives its users: not after normal calls, not after a timeout kill,
not after the caller is killed -9 in the middle of a call."""

import gc
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from omni_core.errors import DecodeTimeout
from omni_core.media import _worker as guard_worker
from omni_core.media import guard, read_frames, write_mp4


def _fill_and_hang(nbytes: int, seconds: float) -> np.ndarray:
    """A guarded function that fills its shared output array, then hangs (a decoder stuck
    after it allocated): the worker imports it from this module by name."""
    out = guard_worker.output_array((nbytes,), np.uint8)
    out[:] = 7
    time.sleep(seconds)
    return out


def segments_mapped(worker_pid: int, pid: str | int = "self") -> set[str]:
    """The decode segments of one worker that a process maps (memfd:omni-decode-PID-N)."""
    prefix = f"memfd:omni-decode-{worker_pid}-"
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        at = line.find(prefix)
        if at >= 0:
            names.add(line[at:].split()[0])
    return names


def backing(a: np.ndarray):
    while isinstance(a, np.ndarray):
        a = a.base
    return getattr(a, "obj", a)  # numpy wraps a buffer in a memoryview


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # a zombie nobody reaped yet has let go of everything


def no_spool_files() -> bool:
    return not list(Path("/dev/shm").glob("omni-decode-*"))


@pytest.fixture
def clip(tmp_path):
    """30 frames of 320x240 (7 MB decoded): frame i is a grey of 8*i with a bar at row i."""
    frames = np.stack([np.full((240, 320, 3), 8 * i, np.uint8) for i in range(30)])
    for i, f in enumerate(frames):
        f[4 * i:4 * i + 4] = 255
    return write_mp4(tmp_path / "clip.mp4", frames, 25, crf=0)


def test_frames_are_handed_over_in_shared_memory_and_reused_only_when_let_go(clip):
    guard._shutdown()
    want = read_frames(clip, timeout=None)
    got = read_frames(clip)
    assert np.array_equal(got, want) and got.flags.writeable
    assert isinstance(backing(got), mmap.mmap)
    worker = guard._WORKER.proc.pid

    idx = [29, 0, 7, 29, 3]
    sampled = read_frames(clip, idx)  # while `got` lives: another segment, `got` untouched
    assert backing(sampled) is not backing(got)
    assert np.array_equal(sampled, want[idx]) and np.array_equal(got, want)

    got[:] = 0  # callers may write into their frames
    view = got[10]
    del got, sampled
    gc.collect()
    # the view keeps its segment: the next decode goes elsewhere and the view stays as written
    again = read_frames(clip, idx[::-1])
    assert backing(again) is not backing(view) and view.max() == 0
    assert np.array_equal(again, want[idx[::-1]])
    mapped = segments_mapped(worker)
    assert len(mapped) >= 2
    del view, again
    gc.collect()
    third = read_frames(clip)  # fills a segment let go of: no new one
    assert np.array_equal(third, want)
    assert segments_mapped(worker) <= mapped

    guard._shutdown()  # the worker goes; our frames stay, the idle segments go with the pool
    gc.collect()
    assert gone(worker) and np.array_equal(third, want)
    assert len(segments_mapped(worker)) == 1
    del third
    gc.collect()
    assert not segments_mapped(worker) and no_spool_files()


def test_a_large_result_made_without_output_array_is_shared_too():
    ones = guard.run_guarded(np.ones, 3 << 20, np.uint8, timeout=60, what="x")
    assert isinstance(backing(ones), mmap.mmap) and ones.shape == (3 << 20,) and ones.all()
    small = guard.run_guarded(np.ones, 16, timeout=60, what="x")  # small: in the answer
    assert not isinstance(backing(small), mmap.mmap) and small.sum() == 16


def test_a_timeout_kill_leaves_no_segment_behind():
    guard._shutdown()
    warm = guard.run_guarded(_fill_and_hang, 4 << 20, 0, timeout=60, what="warm-up")
    assert warm.shape == (4 << 20,) and (warm == 7).all() and isinstance(backing(warm),
                                                                        mmap.mmap)
    worker = guard._WORKER.proc.pid
    with pytest.raises(DecodeTimeout, match="timed out after 3 s"):
        # `warm` is held, so the hung call fills a new segment, then is killed
        guard.run_guarded(_fill_and_hang, 4 << 20, 600, timeout=3, what="hung.mp4")
    gc.collect()
    assert gone(worker)
    assert segments_mapped(worker) == {f"memfd:omni-decode-{worker}-1"}  # only warm's
    assert (warm == 7).all()
    del warm
    gc.collect()
    assert not segments_mapped(worker) and no_spool_files()


def test_a_segment_held_at_a_fork_is_never_reused(clip):
    """A forked child may still read frames it inherited (shared pages): once the parent lets
    go of them, the parent drops their segment instead of decoding into it again."""
    guard._shutdown()
    held = read_frames(clip)
    first = backing(held)
    guard._before_fork()  # what os.fork() runs in the parent
    del held
    gc.collect()
    assert backing(read_frames(clip)) is not first
    guard._shutdown()


def test_a_caller_killed_mid_call_takes_its_worker_and_segments_along(tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from omni_core.media import guard\n"
        "from test_guard import _fill_and_hang\n"
        "guard.run_guarded(sum, [1], timeout=60, what='start')\n"
        "print(guard._WORKER.proc.pid, flush=True)\n"
        "guard.run_guarded(_fill_and_hang, 4 << 20, 600, timeout=600, what='hung.mp4')\n")
    caller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(caller.stdout.readline())
        deadline = time.monotonic() + 120
        while not segments_mapped(worker, worker):  # the hung call has filled its segment
            assert time.monotonic() < deadline and caller.poll() is None
            time.sleep(0.1)
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(30)
        deadline = time.monotonic() + 60
        while not gone(worker):  # it notices its caller is gone, hung or not, and exits
            assert time.monotonic() < deadline, "the orphaned worker lives on"
            time.sleep(0.1)
        assert no_spool_files()
    finally:
        caller.kill()
        caller.wait(30)
