"""A small, real OpenAI-compatible HTTP server for tests and offline demos of the endpoint judge.

`FakeJudgeServer` serves `POST /v1/chat/completions` on 127.0.0.1 from a stdlib
`ThreadingHTTPServer`, so the client is exercised over real HTTP: connection
handling, timeouts, status codes, JSON. Its answer is a function of the request
(default: `oracle_answer`, which knows the labels of the packaged calibration set and
otherwise scores by word overlap), and a script of failures can be queued:
`"500"`, `"429"`, `"garbage"` (a non-label answer), `"not_json"`, `"no_choices"`,
`"sleep:<seconds>"`. It records every request and the most requests in flight at once.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lockgate.judge.calibration import load_calibration_set

Answer = Callable[[dict[str, Any]], str]

_FENCE_RE = re.compile(r"\[(USER REQUEST|RESPONSE|CONTEXT|ANSWER A|ANSWER B)\]\n(.*?)\n\[END \1\]", re.DOTALL)
_WORD_RE = re.compile(r"[a-z]{4,}")


def fenced(text: str) -> dict[str, str]:
    """The fenced fields of a rendered rubric prompt."""
    return {m.group(1): m.group(2) for m in _FENCE_RE.finditer(text)}


def _overlap(a: str, b: str) -> float:
    wa, wb = set(_WORD_RE.findall(a.lower())), set(_WORD_RE.findall(b.lower()))
    return len(wa & wb) / max(1, len(wa))


def make_oracle() -> Answer:
    """An answer function that agrees with the calibration set's labels and guesses sensibly elsewhere."""
    from lockgate.logs.redaction import Redactor

    redact = Redactor()
    labels: dict[tuple[str, str], float] = {}
    for item in load_calibration_set().items:
        # Known both as written and as the judge sees it (redacted).
        labels[(item.rubric, item.response.strip())] = item.score
        labels[(item.rubric, (redact(item.response) or "").strip())] = item.score
    refusal = re.compile(r"\b(sorry|can't|cannot|unable|not able)\b", re.IGNORECASE)

    def answer(payload: dict[str, Any]) -> str:
        user = payload["messages"][-1]["content"]
        fields = fenced(user)
        if "ANSWER A" in fields:
            a = _overlap(fields.get("USER REQUEST", ""), fields["ANSWER A"])
            b = _overlap(fields.get("USER REQUEST", ""), fields["ANSWER B"])
            return "A" if a >= b else "B"
        response = fields.get("RESPONSE", "").strip()
        if "Does the response refuse" in user:
            rubric = "refusal"
        elif "Is the response safe" in user:
            rubric = "safety"
        elif "[CONTEXT]" in user:
            rubric = "faithfulness"
        else:
            rubric = "relevance"
        known = labels.get((rubric, response))
        if known is not None:
            if rubric in ("safety", "refusal"):
                return "yes" if known == 1 else "no"
            return str(int(known))
        if rubric == "refusal":
            return "yes" if refusal.search(response) else "no"
        if rubric == "safety":
            return "no" if "<script" in response.lower() else "yes"
        basis = fields.get("CONTEXT") if rubric == "faithfulness" else fields.get("USER REQUEST", "")
        return str(max(1, min(5, 1 + round(_overlap(basis or "", response) * 8))))

    return answer


class FakeJudgeServer:
    """Start with `with FakeJudgeServer() as server:`; `server.base_url` ends in /v1."""

    def __init__(self, answer: Answer | None = None, logprobs: bool = True, api_key: str | None = None) -> None:
        self.answer = answer or make_oracle()
        self.logprobs = logprobs
        self.api_key = api_key
        self.script: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.unauthorised = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeJudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_action(self) -> str | None:
        with self._lock:
            return self.script.popleft() if self.script else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                """Quiet: tests read the recorded requests instead."""

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to answer

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(payload)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(payload)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, payload: dict[str, Any]) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    server.unauthorised += 1
                    self._send(401, b'{"error": "bad key"}')
                    return
                action = server._next_action()
                if action and action.startswith("sleep:"):
                    time.sleep(float(action.split(":", 1)[1]))
                    action = None
                if action == "500":
                    self._send(500, b'{"error": "boom"}')
                    return
                if action == "429":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                    return
                if action == "not_json":
                    self._send(200, b"<html>gateway</html>")
                    return
                if action == "no_choices":
                    self._send(200, b'{"object": "chat.completion", "choices": []}')
                    return
                if payload.get("logprobs") and not server.logprobs:
                    self._send(400, b'{"error": "logprobs are not supported by this server"}')
                    return
                content = "I am not sure what you mean." if action == "garbage" else server.answer(payload)
                message: dict[str, Any] = {"role": "assistant", "content": content}
                choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
                if payload.get("logprobs"):
                    choice["logprobs"] = {"content": _logprobs(content)}
                body = {
                    "id": "fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": payload.get("model"),
                    "choices": [choice],
                }
                self._send(200, json.dumps(body).encode())

        return Handler


def _logprobs(content: str) -> list[dict[str, Any]]:
    """A plausible distribution: 70% on the answer's first token, the rest on its neighbours."""
    token = content.split()[0] if content.split() else content
    alternatives = {"1": ["2"], "2": ["1", "3"], "3": ["2", "4"], "4": ["3", "5"], "5": ["4"]}
    alternatives.update({"yes": ["no"], "no": ["yes"], "A": ["B"], "B": ["A"]})
    others = alternatives.get(token, [])
    tops = [{"token": token, "logprob": math.log(0.7)}]
    tops += [{"token": o, "logprob": math.log(0.3 / len(others))} for o in others]
    return [{"token": token, "logprob": math.log(0.7), "top_logprobs": tops}]
