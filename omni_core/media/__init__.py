"""Media I/O: the only place in the suite that decodes or encodes audio and video.

- :mod:`.probe`  -- container and stream properties (ffprobe), VFR detection
- :mod:`.video`  -- frame-accurate frame reads (decord, torchcodec, NVDEC), under a timeout
- :mod:`.audio`  -- audio load + resample + downmix through ffmpeg, under a timeout
- :mod:`.write`  -- mp4 (H.264 + AAC) and wav writing through ffmpeg
- :mod:`.image`  -- still images (RGB uint8) read and written through Pillow
"""

from .audio import load_audio
from .image import read_image, write_image
from .probe import MediaInfo, probe
from .video import check_decoder, read_frames, sample_indices
from .write import write_mp4, write_wav

__all__ = [
    "MediaInfo",
    "load_audio",
    "probe",
    "check_decoder",
    "read_frames",
    "read_image",
    "sample_indices",
    "write_image",
    "write_mp4",
    "write_wav",
]
