"""Shared foundation of the DreamID-Omni suite.

Everything the pipelines, the evaluator, the trainer and the benchmark have in common lives
here and nowhere else: media I/O, manifest schemas, typed configs, the pretrained-weights
registry, the Ray helpers, the model wrappers that curation and evaluation share
(``omni_core.models``) and the OpenAI-compatible chat client (``omni_core.chat``). This package
imports none of the others.
"""

__version__ = "0.1.0"

import os as _os

# No code path of this suite may reach a model hub at run time: every checkpoint comes from
# the local weights folder (omni_core.weights). Upstream libraries (transformers, laion_clap,
# pyannote) otherwise try the network on construction and hang or fail slowly offline.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")  # pyannote 4 reports usage online
# Loading a local checkpoint is not a download: keep the library progress bars off the console.
_os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
