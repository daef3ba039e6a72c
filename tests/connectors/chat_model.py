"""An OpenAI-compatible chat server with a very literal model, for the qa recipe's tests
(here and in tests/datasets): started by the test on a free port, answered by the real openai client."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler


class ChatCompletions(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions like an OpenAI-compatible server with a very literal model."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or request["model"] != "qa-writer":
            return self.reply(404, {"error": {"message": f"model {request['model']!r} not found", "type": "invalid_request_error"}})
        passage = request["messages"][-1]["content"].split(":\n\n", 1)[1]
        first = re.split(r"(?<=\.)\s", passage)[0]
        if "GARBLE" in passage:
            content = "Sorry, I cannot do that."
        else:
            content = "Here you go:\n```json\n" + json.dumps([{"question": f"What is stated in: {first[:30]}?",
                                                             "answer": first}]) + "\n```"
        self.reply(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": request["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
