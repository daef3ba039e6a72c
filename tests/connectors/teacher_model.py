"""An OpenAI-compatible chat server that plays a literal teacher for the knowledge recipe's tests
(here and in tests/datasets): started by the test on a free port, called by the real openai client.

It answers the recipe's four requests (told apart by their default system prompts) from the passage:
each sentence is a fact; questions name the fact's key term; the answer is the sentence that holds
the question's words. Words in a passage make it misbehave: GARBLE (prose instead of JSON), NOFACTS,
INVENT (a fact the passage does not state), FRENCH (answers in French), ASTRAY (answers with the
neighbouring sentence), FEW (lists only the passage's first fact, as a small teacher does), RAMBLE (the facts reply cut off at the token limit), SLOW (answers after 2 s),
BUSY (a 429 with Retry-After first), FLAKY (a 503 first), REPEAT (the held-out question nearly
repeats a training one). It reads no `response_format` (as a server without structured output
does), or refuses it with a 400 when `refuse_formats` is set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z0-9]+")
TEMPLATES = ["What is true about {k}?", "Tell me about {k}.", "{k}: what is the rule?",
             "As a new colleague, what should I know regarding {k}?", "A customer asks how {k} works.",
             "Is there anything written on {k}?"]


class TeacherServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: str = "teacher"):
        super().__init__(("127.0.0.1", 0), TeacherHandler)
        self.model = model
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (step, passage)
        self.keys: set[str] = set()  # Authorization headers seen
        self.max_tokens: set = set()  # the reply limits asked for
        self.in_flight = self.most_in_flight = 0
        self.refused_once: set[str] = set()
        self.tokens_per_reply = 0  # 0: about a token per four characters
        self.slow_s = 2.0  # how long SLOW passages take
        self.record = True  # keep (step, passage) of every request; off for long documents
        self.formats: list[tuple[str, dict | None]] = []  # (step, response_format) of each request, when recording
        self.refuse_formats = False  # answer a request holding response_format with a 400, as some servers do

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def steps(self, step: str) -> list[str]:
        return [p for s, p in self.requests if s == step]


def _key(sentence: str) -> str:
    names = [w for w in _WORD.findall(sentence)[1:] if w[0].isupper() or w.isdigit()]
    return names[0] if names else _WORD.findall(sentence)[-1]


class TeacherHandler(BaseHTTPRequestHandler):
    server: TeacherServer

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/stats":
            return self.reply(404, {"error": {"message": f"no {self.path}", "type": "invalid_request_error"}})
        with self.server.lock:
            self.reply(200, {"most_in_flight": self.server.most_in_flight})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or request["model"] != self.server.model:
            return self.reply(404, {"error": {"message": f"model {request['model']!r} not found",
                                              "type": "invalid_request_error"}})
        system, user = request["messages"][0]["content"], request["messages"][-1]["content"]
        step = next(s for s, word in (("facts", "extract facts"), ("questions", "write questions"),
                                      ("answers", "answer questions"), ("restatements", "rewrite passages"))
                    if word in system)
        passage = user.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
        with self.server.lock:
            self.server.keys.add(self.headers.get("Authorization", ""))
            self.server.max_tokens.add(request.get("max_tokens"))
            if self.server.record:
                self.server.requests.append((step, passage))
                self.server.formats.append((step, request.get("response_format")))
            first = False
            if "BUSY" in passage or "FLAKY" in passage:
                first = (step, passage) not in self.server.refused_once
                self.server.refused_once.add((step, passage))
            self.server.in_flight += 1
            self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)
            self.counted = True
        try:
            if self.server.refuse_formats and "response_format" in request:
                return self.reply(400, {"error": {"message": "Unrecognized request argument supplied: response_format",
                                                  "type": "invalid_request_error", "param": None, "code": None}})
            if "BUSY" in passage and first:
                return self.reply(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "0"})
            if "FLAKY" in passage and first:
                return self.reply(503, {"error": {"message": "overloaded", "type": "server_error"}})
            if "SLOW" in passage:
                time.sleep(self.server.slow_s)
            content = self.content(step, passage, system, user)
            tokens = self.server.tokens_per_reply or (len(system) + len(user) + len(content)) // 4
            self.reply(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": request["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": tokens - 1, "completion_tokens": 1, "total_tokens": tokens}})
        finally:
            self.leave()

    def leave(self):
        # Counted out before the answer's last byte goes: once the client holds it, it may send its
        # next request before this thread runs again, which is not one more in flight.
        if getattr(self, "counted", False):
            self.counted = False
            with self.server.lock:
                self.server.in_flight -= 1

    def content(self, step: str, passage: str, system: str, user: str) -> str:
        sentences = [s for s in _SENTENCE.split(passage.replace("\n", " ")) if s.strip()]
        if "GARBLE" in passage:
            return "Sorry, I cannot do that."
        if step == "facts":
            if "NOFACTS" in passage:
                return "[]"
            facts = [{"fact": s, "key_terms": [_key(s)]} for s in sentences]
            if "FEW" in passage:
                facts = facts[:1]
            if "INVENT" in passage:
                facts.append({"fact": "The warranty lasts 99 years.", "key_terms": ["99 years"]})
            if "RAMBLE" in passage:  # as SmolLM2-135M does: the last fact loops until the token limit cuts it
                return json.dumps(facts)[:-1] + ', {"fact": "' + "and the day is a day for the day, " * 40
            return "```json\n" + json.dumps(facts) + "\n```"
        if step == "questions":
            count = int(re.search(r"write (\d+) questions", system).group(1))
            facts = re.findall(r"^\d+\. (.*)$", user.split("\n\nFacts:\n", 1)[1], re.MULTILINE)
            out = []
            for n, fact in enumerate(facts, 1):
                questions = [t.format(k=_key(fact)) for t in TEMPLATES][:count]
                if "REPEAT" in passage:
                    questions[-1] = "So " + questions[0].lower()
                out.append({"fact": n, "questions": questions})
            return json.dumps(out)
        if step == "answers":
            questions = re.findall(r"^\d+\. (.*)$", user.split("\n\nQuestions:\n", 1)[1], re.MULTILINE)
            out = []
            for n, question in enumerate(questions, 1):
                words = set(_WORD.findall(question))
                # The sentence whose key term the question names, else the one sharing most words with it.
                best = max(range(len(sentences)), key=lambda i: (_key(sentences[i]) in words,
                                                                 len(words & set(_WORD.findall(sentences[i])))))
                if "ASTRAY" in passage:  # a neighbouring sentence: in the chunk, but not this fact
                    best = (best + 1) % len(sentences)
                answer = "La réponse se trouve dans le manuel de l'entreprise." if "FRENCH" in passage else sentences[best]
                out.append({"question": n, "answer": answer})
            return json.dumps(out)
        count = int(re.search(r"Rewrite the passage (\d+) times", system).group(1))
        return json.dumps([" ".join(sentences[i % len(sentences):] + sentences[:i % len(sentences)])
                           for i in range(1, count + 1)])

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.leave()
        self.wfile.write(data)


class TeacherProcess:
    """The same teacher in a child process, not recording requests, for documents of thousands of
    chunks: in the test's own process every answer was written while holding the GIL that the
    client under test needs, and tracemalloc (which the bounded-memory tests turn on) traced the
    server's allocations as well as the client's. `stats()` reads what the tests check."""

    def __enter__(self):
        tests = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
        child = ("from connectors.teacher_model import TeacherServer\n"
                 "server = TeacherServer()\nserver.record = False\n"
                 "print(server.server_address[1], flush=True)\nserver.serve_forever()\n")
        self.process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env, text=True)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the teacher process did not start (exit code {self.process.wait()})")
        self.port = int(line)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as response:
            return json.load(response)

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()
