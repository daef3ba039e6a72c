"""The fine-tuning engine: pure Python (never imports Django), used by the CLI, the workers and tests.

The API the platform uses:

    from tinyforge.ml.config import TrainConfig           # documented, validated config; presets
    from tinyforge.ml.train import train, TrainerCallback, Progress, TrainResult, estimate_run
    from tinyforge.ml.checkpoints import find_checkpoint, list_checkpoints
    from tinyforge.ml.schema import validate_file          # streaming validation report
    from tinyforge.ml.formatting import preview_row        # rendered row, trained spans marked
    from tinyforge.ml.models import resolve_base_model, load_model_folder
    from tinyforge.ml.evaluate import generate_replies

    result = train(TrainConfig.from_preset("balanced", base_model="smollm2-135m-instruct"),
                   "data.jsonl", "runs/42", [MyCallback()], resume_from=None)

A callback subclasses TrainerCallback: on_start(info), on_step(progress), on_evaluate(progress),
on_checkpoint(path, step, eval_loss, is_best), on_log(message), on_end(result), and
should_stop() (polled after each step; True saves a checkpoint and returns status "cancelled").
Modules import torch lazily where they can, so importing the config is cheap.
"""
