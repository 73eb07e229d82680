"""The IDBench-Omni metrics, their registry, feature caches and aggregation.

Depends on omni_core only.
"""
