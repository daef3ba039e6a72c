"""A stand-in for an external judge: an OpenAI-compatible chat server the test starts on a free port,
answering the way judge models do (a fair one, one biased to position A, one that answers garbage,
one that answers JSON), and two literal "target" models that repeat the question's last word (echo-target) or its first
(first-word-target)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from http.server import ThreadingHTTPServer

from connectors.chat_model import ChatCompletions

from tinyforge.evaluation.scorers import fold


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def _overlap(answer: str, reference: str) -> int:
    return len(set(fold(answer).split()) & set(fold(reference).split()))


def judge_reply(model: str, prompt: str) -> str:
    pairwise = "Answer A:" in prompt
    if model == "garbage-judge":
        return "What a lovely question! I would rather talk about the weather."
    if model == "position-judge":
        return "A reads better.\nWinner: A" if pairwise else "Looks fine.\nScore: 3"
    reference = _between(prompt, "Reference answer:", "\n\n")
    if pairwise:
        a = _overlap(_between(prompt, "Answer A:", "\n\n"), reference)
        b = _overlap(prompt.split("Answer B:", 1)[1], reference)
        winner = "A" if a > b else "B" if b > a else "tie"
        return f"A shares {a} words with the reference, B {b}.\nWinner: {winner}"
    answer = prompt.split("Answer to grade:", 1)[1].strip()
    score = 5 if fold(reference) in fold(answer) else 3 if _overlap(answer, reference) else 1
    if model == "json-judge":
        return json.dumps({"reasoning": "compared with the reference", "score": score})
    return f"The answer shares {_overlap(answer, reference)} words with the reference.\n**Score: {score}**"


class JudgeServer:
    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        server = self

        class Handler(ChatCompletions):  # its reply() writes the JSON answer
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(request)
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    time.sleep(server.delay_s)
                    self._answer(request)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, request):
                model = request["model"]
                prompt = request["messages"][-1]["content"]
                words = re.findall(r"\w+", prompt) or [""]
                if model == "echo-target":
                    content = words[-1]
                elif model == "first-word-target":
                    content = words[0]
                elif model.endswith("-judge"):
                    content = "OK" if prompt == "Say OK." else judge_reply(model, prompt)
                else:
                    return self.reply(404, {"error": {"message": f"The model `{model}` does not exist",
                                                      "type": "invalid_request_error", "code": "model_not_found"}})
                self.reply(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3,
                                           "total_tokens": len(prompt.split()) + 3}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def judged(self) -> list[dict]:
        return [r for r in self.requests if r["model"].endswith("-judge") and r["messages"][-1]["content"] != "Say OK."]


@contextlib.contextmanager
def judge_server(delay_s: float = 0.0):
    server = JudgeServer(delay_s)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
