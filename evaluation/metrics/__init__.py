"""The IDBench-Omni metrics, one module each; importing this package registers them."""

from . import aes, clap, id_sim, pq, spk_conf, sync, t_sim, viclip, wer  # noqa: F401
