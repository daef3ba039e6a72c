"""The inference service: OpenAI-compatible API, continuous batching, LoRA on shared bases.

Pure Python (never imports Django). `create_app(registry, authenticator, settings, answer_log)` in
app.py is the entry point; the platform passes a database-backed registry, authenticator and
answer log (which keeps each answer under its id for feedback), `tinyforge serve` and exported
bundles pass FolderRegistry, an API key from the environment and no answer log.
"""
