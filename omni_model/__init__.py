"""The Symmetric Conditional dual-stream DiT, its training on Ray Train, and the sampler.

Depends on omni_core only.
"""
