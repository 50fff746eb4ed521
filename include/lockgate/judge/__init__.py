"""LLM-as-judge: rubrics (versioned prompt files), backends (local model, OpenAI-compatible
endpoint), scoring from label distributions, bootstrap statistics, and calibration against
a human-labelled set.

Importing this package is cheap; torch and transformers load inside the local backend.
"""
