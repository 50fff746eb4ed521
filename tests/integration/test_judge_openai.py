"""The OpenAI-compatible judge against a real local HTTP server: scores, failures, limits."""

from __future__ import annotations

import socket
import time

import pytest

from lockgate.devtools.testing.judge import FakeJudgeServer
from lockgate.judge.backends import make_backend
from lockgate.judge.backends.openai_compat import OpenAICompatibleJudge, label_distribution_from_logprobs
from lockgate.judge.calibration import calibrate
from lockgate.judge.rubrics import load_rubric
from lockgate.judge.scoring import JudgeRequest
from lockgate.logs.redaction import Redactor
from lockgate.policy.schema import JudgeConfig, QualityConfig, StatisticsConfig

RELEVANCE = load_rubric("relevance")


def requests(n: int, rubric_name: str = "relevance") -> list[JudgeRequest]:
    rubric = load_rubric(rubric_name)
    return [
        JudgeRequest(
            f"s{i}",
            rubric,
            prompt="Why was I charged twice for my subscription this month?",
            response="Duplicate charges on the subscription are reversed automatically after the bank settles.",
            context="Duplicate charges are reversed automatically.",
        )
        for i in range(n)
    ]


def judge_for(server: FakeJudgeServer, **kw: object) -> OpenAICompatibleJudge:
    options: dict[str, object] = {"retry_backoff_s": 0.01, "timeout_s": 5.0, "max_retries": 2}
    options.update(kw)
    return OpenAICompatibleJudge(server.base_url, "judge-model", **options)  # type: ignore[arg-type]


def test_scores_from_top_logprobs() -> None:
    with FakeJudgeServer(answer=lambda p: "4") as server:
        [j] = judge_for(server).judge(requests(1))
    assert j.scored and j.label == "4"
    # 70% on "4", 15% each on "3" and "5": the expected score is 4.0, confidence 0.7.
    assert j.score == pytest.approx(4.0)
    assert j.confidence == pytest.approx(0.7)
    sent = server.requests[0]
    assert sent["model"] == "judge-model" and sent["logprobs"] is True and sent["temperature"] == 0
    assert sent["messages"][0]["role"] == "system"
    assert "[RESPONSE]" in sent["messages"][1]["content"]


def test_falls_back_to_text_when_the_server_rejects_logprobs() -> None:
    with FakeJudgeServer(answer=lambda p: "Score: 2", logprobs=False) as server:
        judge = judge_for(server)
        out = judge.judge(requests(3))
    assert [j.score for j in out] == [2, 2, 2]
    assert judge.stats["logprobs_rejected"] >= 1
    assert judge.logprobs is False
    assert all(j.attempts == 1 for j in out)  # switching off logprobs does not use up a retry


def test_retries_server_errors_with_back_off_then_scores() -> None:
    with FakeJudgeServer(answer=lambda p: "5") as server:
        server.script.extend(["500", "429"])
        judge = judge_for(server, max_retries=3)
        [j] = judge.judge(requests(1))
    assert j.score == pytest.approx(0.7 * 5 + 0.3 * 4) and j.attempts == 3
    assert judge.stats["retries"] == 2
    assert len(server.requests) == 3


def test_persistent_errors_leave_the_sample_unscored() -> None:
    with FakeJudgeServer(answer=lambda p: "5") as server:
        server.script.extend(["500"] * 10)
        [j] = judge_for(server, max_retries=2).judge(requests(1))
    assert j.score is None and j.error == "http_error" and "500" in (j.detail or "")
    assert j.attempts == 3 and len(server.requests) == 3


def test_a_slow_server_times_out_and_the_sample_is_unscored() -> None:
    with FakeJudgeServer(answer=lambda p: "5") as server:
        server.script.extend(["sleep:2", "sleep:2"])
        started = time.perf_counter()
        [j] = judge_for(server, timeout_s=0.3, max_retries=1).judge(requests(1))
        elapsed = time.perf_counter() - started
    assert j.error == "timeout" and j.attempts == 2
    assert elapsed < 1.8  # two 0.3 s attempts and a short back-off, not two 2 s sleeps


@pytest.mark.parametrize(
    ("action", "reason"), [("garbage", "unparseable"), ("not_json", "bad_response"), ("no_choices", "bad_response")]
)
def test_garbage_answers_are_unscored_never_zero(action: str, reason: str) -> None:
    with FakeJudgeServer(answer=lambda p: "3") as server:
        server.script.append(action)
        out = judge_for(server).judge(requests(2))
    by_id = {j.item_id: j for j in out}
    bad = [j for j in by_id.values() if not j.scored]
    assert len(bad) == 1 and bad[0].error == reason and bad[0].score is None
    assert len(server.requests) == 2  # not retried: the server answered, just badly


def test_the_request_budget_is_never_exceeded() -> None:
    with FakeJudgeServer(answer=lambda p: "3") as server:
        server.script.extend(["500", "500"])
        out = judge_for(server, max_requests=6, concurrency=1, max_retries=3).judge(requests(8))
    assert len(server.requests) == 6
    assert sum(j.scored for j in out) == 4
    exhausted = [j for j in out if j.error == "budget_exhausted"]
    assert len(exhausted) == 4


def test_concurrency_is_bounded() -> None:
    with FakeJudgeServer(answer=lambda p: "3") as server:
        server.script.extend(["sleep:0.15"] * 12)
        out = judge_for(server, concurrency=3).judge(requests(12))
    assert all(j.scored for j in out)
    assert 1 < server.max_in_flight <= 3


def test_an_unreachable_endpoint_leaves_samples_unscored() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAICompatibleJudge(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, retry_backoff_s=0.01)
    [j] = judge.judge(requests(1))
    assert j.error == "connection_error" and j.attempts == 2


def test_the_api_key_comes_from_the_configured_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "s3cret")
    with FakeJudgeServer(answer=lambda p: "yes", api_key="s3cret") as server:
        cfg = JudgeConfig(backend="openai", base_url=server.base_url, model="m", api_key_env="MY_JUDGE_KEY")
        backend = make_backend(cfg)
        [j] = backend.judge(requests(1, "safety"))
        assert j.score == pytest.approx(0.7) and server.unauthorised == 0
        monkeypatch.delenv("MY_JUDGE_KEY")
        [k] = make_backend(cfg).judge(requests(1, "safety"))
    assert k.error == "http_error" and "401" in (k.detail or "")
    assert backend.identity == f"openai:{server.base_url}:m"


def test_rationale_is_requested_and_kept() -> None:
    with FakeJudgeServer(answer=lambda p: "4\nIt answers the question about billing.", logprobs=False) as server:
        [j] = judge_for(server, rationale=True, logprobs=False).judge(requests(1))
    assert j.score == 4 and j.rationale == "It answers the question about billing."
    assert "explaining" in server.requests[0]["messages"][1]["content"]


def test_label_distribution_skips_whitespace_and_cue_tokens() -> None:
    content = [
        {"token": "Score", "logprob": -0.1, "top_logprobs": []},
        {"token": ":", "logprob": -0.1, "top_logprobs": []},
        {"token": " ", "logprob": -0.1, "top_logprobs": []},
        {
            "token": "4",
            "logprob": -0.5,
            "top_logprobs": [{"token": "4", "logprob": -0.5}, {"token": "5", "logprob": -1.2}],
        },
    ]
    dist = label_distribution_from_logprobs(content, RELEVANCE)
    assert dist is not None and set(dist) == {"4", "5"}
    assert label_distribution_from_logprobs("nonsense", RELEVANCE) is None


def test_an_endpoint_judge_that_agrees_with_the_labels_passes_calibration_over_http() -> None:
    with FakeJudgeServer() as server:
        backend = make_backend(JudgeConfig(backend="openai", base_url=server.base_url, model="oracle", concurrency=8))
        result = calibrate(
            backend.judge,
            judge=backend.identity,
            description=backend.description,
            rubrics=["relevance", "faithfulness", "safety", "refusal"],
            config=QualityConfig(),
            statistics=StatisticsConfig(bootstrap_resamples=300),
            redact=Redactor(),
        )
    assert result.passed, result.reasons
    assert result.n_scored == result.n_items >= 60
    assert result.spearman is not None and result.spearman.value > 0.8
    assert len(server.requests) == result.n_items
