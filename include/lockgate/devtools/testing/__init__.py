"""Fakes and helpers for tests and benches: `registry` (a stub version, hand-made evidence, throwaway
databases, the shipped policy for any model names) and `judge` (a real OpenAI-compatible fake server)."""
