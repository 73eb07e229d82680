"""The user study (``omni study``): blind human ratings of generated videos, served locally,
stored in SQLite and aggregated into the paper's human-evaluation table.

- :mod:`.design`: create a study (items, balanced assignments, attention checks, links);
- :mod:`.db`: its SQLite database (WAL);
- :mod:`.server`: the rating web app and its API;
- :mod:`.aggregate`: attention checks, the table with bootstrap intervals, Krippendorff's
  alpha, exports;
- :mod:`.report`: the table in the rated comparison's HTML report.
"""
