"""The whole TinyForgeAI journey through the API: upload a dataset, train, deploy, chat.

    export TINYFORGE_URL=http://localhost:8000      # `make demo`'s URL (compose: http://localhost:8080)
    export TINYFORGE_TOKEN=tf_...                   # a token with the write and inference scopes
    .venv/bin/python examples/journey.py [--project "Demo project"] [--data examples/data/demo_dataset.jsonl]

Each step is one REST call (the fields of each are in the OpenAPI schema at /api/docs/), then the
chat goes through the official `openai` client against the same base URL. Prints what it does;
exits 1 with the server's error when a step fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

HERE = Path(__file__).resolve().parent


class StepFailed(Exception):
    pass


class Platform:
    def __init__(self, url: str, token: str):
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise StepFailed(f"{method} /api/v1{path} answered {response.status_code}: {response.text}")
        return response.json()

    def wait(self, path: str, done: str, failed: set[str], timeout: float) -> dict:
        """Polls an object until its status is `done`; the platform keeps every status in its database."""
        deadline = time.monotonic() + timeout
        shown = None
        while time.monotonic() < deadline:
            item = self.call("GET", path)
            if item["status"] != shown:
                shown = item["status"]
                print(f"  {path} {shown}", flush=True)
            if item["status"] == done:
                return item
            if item["status"] in failed:
                raise StepFailed(f"{path} ended {item['status']}: {item.get('error')}")
            time.sleep(3)
        raise StepFailed(f"{path} was not {done} after {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default="Demo project", help="name of a project of the token's team")
    parser.add_argument("--data", type=Path, default=HERE / "data" / "demo_dataset.jsonl", help="a JSONL dataset")
    parser.add_argument("--preset", default="quick", help="training preset (quick, balanced, ...)")
    parser.add_argument("--question", default="How long does the Quillbox battery last?")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the training")
    args = parser.parse_args(argv)
    try:
        url, token = os.environ["TINYFORGE_URL"].rstrip("/"), os.environ["TINYFORGE_TOKEN"]
    except KeyError as missing:
        print(f"set {missing.args[0]} (see the top of {Path(__file__).name})", file=sys.stderr)
        return 2
    platform = Platform(url, token)
    try:
        projects = platform.call("GET", "/projects/", params={"page_size": 500})["results"]
        project = next((p for p in projects if p["name"] == args.project), None)
        if project is None:
            raise StepFailed(f"no project named {args.project!r}; the token's team has {[p['name'] for p in projects]}")

        print(f"1. upload {args.data.name} into a new dataset of {project['name']!r}")
        dataset = platform.call("POST", "/datasets/", json={"project": project["id"], "name": f"{args.data.stem} {time.strftime('%H:%M:%S')}"})
        with args.data.open("rb") as upload:
            version = platform.call("POST", f"/datasets/{dataset['id']}/upload/", files={"files": (args.data.name, upload)})
        version = platform.wait(f"/dataset-versions/{version['id']}/", "ready", {"failed"}, 600)
        print(f"   version {version['number']}: {version['row_count']} rows")

        print(f"2. train a LoRA of smollm2-135m-instruct with the {args.preset!r} preset")
        run = platform.call("POST", "/runs/", json={
            "project": project["id"], "name": f"journey {time.strftime('%H:%M:%S')}", "dataset_version": version["id"],
            "base_model": "smollm2-135m-instruct", "method": "lora", "config": {"preset": args.preset},
        })
        run = platform.wait(f"/runs/{run['id']}/", "succeeded", {"failed", "cancelled"}, args.timeout)

        print("3. deploy the run")
        name = f"journey-{run['id']}"
        deployment = platform.call("POST", "/deployments/", json={"name": name, "run": run["id"]})
        platform.wait(f"/deployments/{deployment['id']}/", "ready", {"failed", "stopped"}, 600)
    except (StepFailed, httpx.HTTPError) as failure:
        print(f"failed: {failure}", file=sys.stderr)
        return 1

    print(f"4. chat with {name} through the openai client")
    client = OpenAI(base_url=f"{url}/v1", api_key=token)
    print(f"   models: {[model.id for model in client.models.list().data]}")
    print(f"   user: {args.question}\n   assistant: ", end="", flush=True)
    stream = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": args.question}], max_tokens=64, temperature=0, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
