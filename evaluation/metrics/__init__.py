"""The IDBench-Omni metrics, one module each; importing this package registers them.

``t_sim_ge2e`` and ``wer_sphinx`` are lite backends (real small models from installed
packages, no weights folder), not the paper's protocol: see :mod:`evaluation.registry`."""

from . import (  # noqa: F401
    aes,
    clap,
    id_sim,
    pq,
    spk_conf,
    sync,
    t_sim,
    t_sim_ge2e,
    viclip,
    wer,
    wer_sphinx,
)
