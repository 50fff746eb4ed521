"""The local transformers judge on the tiny random-weight model (CPU; GPU path skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.judge.backends import make_backend
from lockgate.judge.backends.base import placeholder_judge_dir
from lockgate.judge.backends.local import LocalJudge
from lockgate.judge.calibration import calibrate
from lockgate.judge.rubrics import load_rubric
from lockgate.judge.scoring import JudgeRequest
from lockgate.logs.redaction import Redactor
from lockgate.settings import JudgeConfig, QualityConfig, StatisticsConfig


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lockgate.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("judge") / "tiny", seed=3)


@pytest.fixture(scope="module")
def judge(tiny_dir: Path) -> LocalJudge:
    return LocalJudge(tiny_dir, batch_size=4, device="cpu")


def reqs(n: int, rubric: str = "relevance") -> list[JudgeRequest]:
    r = load_rubric(rubric)
    return [
        JudgeRequest(
            f"s{i}",
            r,
            prompt=f"Where is my parcel number {i}? Tracking has not changed." + " Please help." * (i % 3),
            response="Your parcel is waiting at customs; tracking updates once it clears." + " Thanks." * i,
            context="A parcel in transit abroad shows no tracking updates until customs clears it.",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("rubric", ["relevance", "faithfulness", "safety", "refusal", "pairwise"])
def test_every_rubric_has_distinct_label_tokens(judge: LocalJudge, rubric: str) -> None:
    tokens = judge.label_tokens(load_rubric(rubric))
    assert len(set(tokens.token_ids.values())) == len(load_rubric(rubric).labels)


def test_scores_are_expected_values_on_the_rubric_scale(judge: LocalJudge) -> None:
    out = judge.judge(reqs(9) + reqs(3, "safety"))
    assert [j.item_id for j in out] == [f"s{i}" for i in range(9)] + ["s0", "s1", "s2"]
    for j in out[:9]:
        assert j.scored and 1.0 <= j.score <= 5.0
        assert 0 < j.confidence <= 1 and 0 < j.score_mass <= 1
    for j in out[9:]:
        assert 0.0 <= j.score <= 1.0


def test_shared_prefix_batches_equal_padded_batches(judge: LocalJudge) -> None:
    batch = reqs(6, "faithfulness")
    texts = [judge.prompt_text(r) for r in batch]
    labels = judge.label_tokens(batch[0].rubric)
    shared = judge._label_probs_shared_prefix(texts, labels)
    padded = judge._label_probs_padded(texts, labels)
    assert shared is not None
    for a, b in zip(shared, padded, strict=True):
        for label in a:
            assert a[label] == pytest.approx(b[label], rel=1e-4, abs=1e-7)
    # Batched scores equal one-at-a-time scores: padding and batching change nothing.
    single = [judge._label_probs_padded([t], labels)[0] for t in texts]
    for a, b in zip(single, padded, strict=True):
        for label in a:
            assert a[label] == pytest.approx(b[label], rel=1e-4, abs=1e-7)


def test_a_failing_batch_is_retried_per_sample_and_failures_are_unscored(
    judge: LocalJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = judge._label_probs

    def flaky(texts: list[str], labels: object) -> object:
        if len(texts) > 1 or "number 2?" in texts[0]:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(texts, labels)  # type: ignore[arg-type]

    monkeypatch.setattr(judge, "_label_probs", flaky)
    out = judge.judge(reqs(4))
    assert [j.scored for j in out] == [True, True, False, True]
    assert out[2].error == "backend_error" and "out of memory" in (out[2].detail or "")


def test_rationales_are_generated_in_batches(tiny_dir: Path) -> None:
    judge = LocalJudge(tiny_dir, batch_size=4, rationale=True, rationale_max_new_tokens=6)
    out = judge.judge(reqs(3))
    assert all(j.scored for j in out)
    assert all(j.rationale is None or isinstance(j.rationale, str) for j in out)
    assert any(j.rationale for j in out)


def test_generate_and_parse_baseline(judge: LocalJudge) -> None:
    j = judge.judge_by_generation(reqs(1)[0], max_new_tokens=4)
    # Random weights write gibberish: the sample is unscored (or, by luck, scored), never zero.
    assert (j.score is None and j.error == "unparseable") or (j.score is not None and 1 <= j.score <= 5)


def test_a_random_weight_judge_fails_calibration(judge: LocalJudge) -> None:
    result = calibrate(
        judge.judge,
        judge=judge.identity,
        description=judge.description,
        rubrics=["safety", "refusal"],
        config=QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=300),
        redact=Redactor(),
    )
    assert not result.passed
    assert result.n_scored == result.n_items  # it answers every item...
    assert result.spearman is not None and result.spearman.value < 0.5  # ...with no agreement to speak of
    assert result.reasons


def test_without_a_model_path_a_placeholder_judge_is_built_once(tmp_path: Path) -> None:
    backend = make_backend(JudgeConfig(), home=tmp_path)
    assert isinstance(backend, LocalJudge) and backend.placeholder
    assert "placeholder" in backend.description
    assert (placeholder_judge_dir(tmp_path) / "config.json").exists()
    again = make_backend(JudgeConfig(), home=tmp_path)
    assert again.identity == backend.identity


def test_gpu_judge_uses_cuda_in_bfloat16(tiny_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the GPU path (device auto -> cuda, bfloat16) is not exercised")
    judge = LocalJudge(tiny_dir, device="auto")
    assert judge.device == "cuda"
    assert next(judge.model.parameters()).dtype == torch.bfloat16
    assert all(j.scored for j in judge.judge(reqs(4)))
