"""Demo and development tooling, apart from the runtime: nothing outside this package imports it.

* `stack`: the local stack, `lockgate up`, `down`, `status` and `settings apply`.
* `demo`, `scenarios`: `lockgate demo` and its stories.
* `synthetic`, `seed`: synthetic inference traffic, `lockgate logs seed`.
* `tiny_model`: tiny random-weight Llama models, `lockgate models build-tiny`.
* `placeholder_judge`: the demo policy's random-weight judge (`quality.judge.backend: placeholder`).
* `testing`: fakes and helpers for tests and benches (a stub registry version, hand-made
  evidence, a fake OpenAI-compatible judge server).

The CLI names the dev commands' handlers as "module:function" strings, imported only when such a
command runs; the judge factory names the placeholder judge the same way, imported only when a
policy asks for `backend: placeholder`.
"""
