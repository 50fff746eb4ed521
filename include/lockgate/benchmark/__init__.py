"""Production-shaped benchmarks of a challenger against its champion.

* `stats`: percentiles, coefficient of variation, paired bootstrap intervals of ratios (numpy only);
* `hardware`: peak figures of known GPUs, FLOPs and bytes moved per request, MFU and MBU (pure);
* `workload`: prompt lengths drawn from the production log store, or a fixed synthetic set;
* `harness`: the torch measurement loop (eager, static KV cache + `torch.compile`, dynamic int8),
  interleaving the versions request by request;
* `environment`: the environment fingerprint, memory probes and NVML energy;
* `analysis`: measurements turned into `MetricEvidence` (value, interval, ratio) and validity;
* `report`, `svg`: the HTML report with inline SVG charts.

Importing this package is cheap; torch and transformers are imported inside the functions that need them.
"""
