"""Ray Data DAGs that build DreamID-Omni training data: in-pair and cross-pair construction.

Depends on omni_core only.
"""
