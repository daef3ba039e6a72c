"""The inference service: OpenAI-compatible API, continuous batching, LoRA on shared bases.

Pure Python (never imports Django). `create_app(registry, authenticator, settings)` in app.py is
the entry point; the platform passes a database-backed registry and authenticator, `tinyforge
serve` and exported bundles pass FolderRegistry and an API key from the environment.
"""
