"""The IDBench-Omni metrics, one module each; importing this package registers them."""

from . import spk_conf, wer  # noqa: F401
