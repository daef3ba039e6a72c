"""What the training app tells other apps, which connect in their AppConfig.ready()."""

from django.dispatch import Signal

# Sent by the train job once a run succeeded (run=<TrainingRun>): evaluations start from it.
run_succeeded = Signal()
