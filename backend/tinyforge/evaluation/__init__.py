"""Evaluations without Django: eval sets, targets answered through the serving engine's batching,
scorers, LLM judges, and intervals on the aggregates.

The platform's `evals` app, the `tinyforge eval` command and bench/eval_throughput.py all run this
code. It may use ml/ (formatting, models) and serving/ (the engine); nothing here imports Django.
"""
