"""Production evidence (`live`): what each version's own traffic shows, from the inference logs.

`stats` holds the pure estimators (stratified bootstrap of quantiles, means and ratios of
sums; Wilson and Newcombe intervals for rates), `compare` turns two groups of requests into
gate-ready `MetricEvidence`, `report` renders the page. The job is `lockgate.jobs.live`.
"""
