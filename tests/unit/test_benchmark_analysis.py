"""From synthetic request records to metrics, ratios, validity and the report (no torch, no model)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from lockgate.benchmark.analysis import analyse, metric_key
from lockgate.benchmark.environment import DeviceChoice
from lockgate.benchmark.hardware import ModelShape
from lockgate.benchmark.harness import CellFailure, Measurements, Plan, RequestRecord
from lockgate.benchmark.report import render_report
from lockgate.benchmark.workload import PromptSet
from lockgate.evidence import EvidenceSummary

CONTRACT = (
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p99",
    "tpot_ms_p50",
    "itl_ms_p50",
    "e2e_ms_p50",
    "e2e_ms_p99",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "peak_memory_mb",
)
SHAPE = ModelShape(layers=12, hidden=768, heads=12, kv_heads=12, head_dim=64, intermediate=2048, vocab=32000,
                   mlp_matrices=3)  # fmt: skip


def _records(
    *,
    slowdown: float = 1.0,
    reps: int = 6,
    requests: int = 8,
    batch_sizes: tuple[int, ...] = (1, 4),
    configs: tuple[str, ...] = ("eager",),
    new_tokens: int = 8,
    roles: tuple[str, ...] = ("challenger", "champion"),
    rep_noise: float = 0.2,
    pair_noise: float = 0.02,
    energy: bool = False,
    base_ms: float = 2.0,
) -> list[RequestRecord]:
    """Records with a strong machine drift per repetition, shared by both versions (as interleaving gives)."""
    rng = np.random.default_rng(0)
    out = []
    for rep in range(reps):
        drift = float(rng.lognormal(0, rep_noise))
        for config in configs:
            for bs in batch_sizes:
                for q in range(requests):
                    length = 20 + 7 * q
                    for role in roles:
                        factor = slowdown if role == "challenger" else 1.0
                        noise = float(rng.lognormal(0, pair_noise))
                        ttft = base_ms * (1 + length / 50) * bs**0.5 * drift * factor * noise
                        steps = [base_ms * 0.5 * drift * factor * float(rng.lognormal(0, pair_noise))
                                 for _ in range(new_tokens - 1)]  # fmt: skip
                        out.append(
                            RequestRecord(
                                role=role,
                                config=config,
                                batch_size=bs,
                                repetition=rep,
                                request=q,
                                prompt_tokens=length * bs,
                                padded_len=length,
                                new_tokens=new_tokens,
                                ttft_ms=ttft,
                                step_ms=steps,
                                e2e_ms=ttft + sum(steps),
                                workset_bytes=1024 * bs,
                                weight_bytes=int(4e6 * factor),
                                energy_mj=50.0 * factor if energy else None,
                            )
                        )
    return out


def _measurements(records: list[RequestRecord], device: DeviceChoice | None = None, **plan: object) -> Measurements:
    roles = sorted({r.role for r in records}, key=lambda r: r != "challenger")
    p = Plan(
        batch_sizes=tuple(sorted({r.batch_size for r in records})) or (1,),  # type: ignore[arg-type]
        new_tokens=records[0].new_tokens if records else 8,
        repetitions=6,
        warmups=1,
        configs=tuple(dict.fromkeys(r.config for r in records)) or ("eager",),  # type: ignore[arg-type]
    )
    for k, v in plan.items():
        object.__setattr__(p, k, v)
    return Measurements(
        roles=roles,
        device=device or DeviceChoice("cpu", "test CPU", "float32"),
        plan=p,
        prompts=PromptSet(tuple(range(20, 76, 7)), "synthetic", "test"),
        records=records,
    )


def _analyse(m: Measurements, max_cv: float = 0.25):  # noqa: ANN202
    return analyse(m, {"challenger": SHAPE, "champion": SHAPE}, confidence=0.95, resamples=400, seed=0, max_cv=max_cv)


def test_metric_names_follow_the_contract() -> None:
    head = ("eager", 1)
    assert metric_key("ttft_ms_p50", "eager", 1, head) == "ttft_ms_p50"
    assert metric_key("ttft_ms_p50", "eager", 4, head) == "ttft_ms_p50.bs4"
    assert metric_key("ttft_ms_p50", "int8_dynamic", 1, head) == "ttft_ms_p50.int8_dynamic.bs1"


def test_identical_versions_pass_a_ten_percent_ratio_gate_despite_machine_drift() -> None:
    a = _analyse(_measurements(_records(slowdown=1.0, configs=("eager", "int8_dynamic"))))
    assert a.status == "ok" and a.message is None
    for name in CONTRACT:
        for suffix in ("", ".bs4", ".int8_dynamic.bs1", ".int8_dynamic.bs4"):
            assert name + suffix in a.metrics, name + suffix
    ttft = a.metrics["ttft_ms_p50"]
    assert ttft.challenger is not None and ttft.champion is not None and ttft.ratio is not None
    assert ttft.ratio.confidence == 0.95 and ttft.ratio.n == 6
    assert ttft.ratio.ci_low is not None and ttft.ratio.ci_high is not None
    assert ttft.ratio.ci_low <= 1.0 <= ttft.ratio.ci_high <= 1.10
    assert a.headline == {"config": "eager", "batch_size": 1}
    # Each version's own CV carries the drift; the comparison's does not.
    info = a.cells[0].per_role["challenger"]
    assert info["cv_ttft_ms"] > 0.1 and info["paired_cv_ttft_ms"] < 0.05
    assert "not reported on CPU" in " ".join(a.notes)
    assert "mfu_prefill" not in a.metrics and "mbu_decode" not in a.metrics


def test_a_slower_challenger_fails_the_ratio_gate() -> None:
    a = _analyse(_measurements(_records(slowdown=1.5)))
    for name in ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "ttft_ms_p99"):
        ratio = a.metrics[name].ratio
        assert ratio is not None and ratio.ci_low is not None
        assert ratio.ci_low > 1.10, name
    tput = a.metrics["decode_tokens_per_s"].ratio
    assert tput is not None and tput.value == pytest.approx(1 / 1.5, rel=0.05)


def test_noisy_comparison_is_invalid() -> None:
    a = _analyse(_measurements(_records(pair_noise=0.6)), max_cv=0.05)
    assert a.status == "invalid"
    assert a.message is not None and "max_cv 0.05" in a.message
    assert a.problems


def test_failed_headline_cell_is_an_error_and_other_sizes_stay() -> None:
    records = [r for r in _records() if r.batch_size != 1]
    m = _measurements(records, batch_sizes=(1, 4))
    m.failures.append(CellFailure("eager", 1, "challenger", "out_of_memory", "out of memory at batch size 1"))
    a = _analyse(m)
    assert a.status == "error"
    assert a.message is not None and "out of memory" in a.message
    assert "ttft_ms_p50.bs4" in a.metrics and "ttft_ms_p50" not in a.metrics


def test_one_version_has_estimates_without_ratios() -> None:
    a = _analyse(_measurements(_records(roles=("challenger",), rep_noise=0.02)))
    m = a.metrics["ttft_ms_p50"]
    assert m.challenger is not None and m.champion is None and m.ratio is None
    assert a.status == "ok"


def test_gpu_metrics_on_a_known_gpu() -> None:
    device = DeviceChoice("cuda", "NVIDIA H100 80GB HBM3", "bfloat16")
    a = _analyse(_measurements(_records(energy=True), device=device))
    for name in ("mfu_prefill", "mbu_decode", "energy_mj_per_token"):
        m = a.metrics[name]
        assert m.challenger is not None and math.isfinite(m.challenger.value), name
    mbu = a.metrics["mbu_decode"].champion
    assert mbu is not None and 0 < mbu.value < 1
    assert a.metrics["energy_mj_per_token"].champion is not None
    assert a.metrics["energy_mj_per_token"].champion.value == pytest.approx(50.0 / 8)  # type: ignore[union-attr]


def test_unknown_gpu_omits_utilisation_with_a_note() -> None:
    device = DeviceChoice("cuda", "NVIDIA GeForce RTX 4090", "bfloat16")
    a = _analyse(_measurements(_records(), device=device))
    assert "mfu_prefill" not in a.metrics
    assert any("not in the table of known GPUs" in n for n in a.notes)


def test_report_escapes_hostile_names_and_draws_charts() -> None:
    a = _analyse(_measurements(_records()))
    hostile = "<script>alert(1)</script>"
    summary = EvidenceSummary(
        kind="benchmark",
        model_name=hostile,
        challenger_version="2",
        champion_version="1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        metrics=a.metrics,
        details={
            "headline": a.headline,
            "notes": [hostile],
            "workload": {"source": "logs", "detail": hostile, "lengths": [10, 20, 30], "n": 3},
            "config": {"batch_sizes": [1, 4], "max_cv": 0.25},
            "fingerprint": {"device": hostile},
            "failures": [
                {"config": "eager", "batch_size": 8, "role": None, "kind": "out_of_memory", "message": hostile}
            ],  # fmt: skip
        },
    )
    html = render_report(summary, a, run_key="r1")
    assert hostile not in html and "&lt;script&gt;" in html
    assert html.count("<svg") >= 8  # 3 latency plots x 2 cells, 2 throughput charts, the length histogram
    assert "ttft_ms_p50" in html and "out_of_memory" in html


def test_error_report_says_what_went_wrong() -> None:
    summary = EvidenceSummary(
        kind="benchmark",
        model_name="m",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        status="error",
        valid=False,
        message="model 'm' has no alias 'challenger' in the registry",
    )
    html = render_report(summary, None, run_key="r2")
    assert "What went wrong" in html and "no alias" in html and "error" in html
