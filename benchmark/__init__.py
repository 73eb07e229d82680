"""IDBench-Omni: instance manifests, the released layout, running a model, paper-style tables.

Sits on top: may use pipelines, evaluation and omni_model.
"""
