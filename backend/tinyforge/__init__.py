"""TinyForgeAI: turn a team's own data into a small fine-tuned language model and serve it."""

__version__ = "0.1.0"
