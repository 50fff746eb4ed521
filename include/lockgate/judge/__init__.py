"""LLM-as-judge: rubrics (versioned `<name>.jinja` files, packaged or the policy's own), backends
(local model, OpenAI-compatible endpoint), scoring from label distributions, bootstrap
statistics, and calibration against a labelled set that declares who labelled it.

Importing this package is cheap; torch and transformers load inside the local backend.
"""
