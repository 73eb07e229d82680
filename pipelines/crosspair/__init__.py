"""Cross-pair curation: identity retrieval across clips and videos, cloned clean voices,
omni-task samples (paper.md, "Data construction"; stages 2 and 3 of training)."""
