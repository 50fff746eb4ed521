"""Drift of inference logs between a reference and a current window.

* `columns`: what is compared (operational metrics, text descriptors, embeddings) and how;
* `descriptors`: offline text descriptors, vectorised;
* `stats`: pure statistics (tests, effect sizes, Benjamini-Hochberg, the decision);
* `analysis`: frames in, `DriftSummary` out;
* `summary`: the `DriftSummary` model and its translation into the evidence contract;
* `evidently_report`: Evidently's HTML report over the same columns (adapter);
* `report`: lockgate's own summary page;
* `windows`: which time windows are compared.

Importing this package is cheap: heavy libraries are imported inside the functions that need them.
"""
