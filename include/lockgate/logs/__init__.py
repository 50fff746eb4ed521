"""Inference-log store: schema, deterministic sampling, quarantine, redaction, synthetic traffic."""
