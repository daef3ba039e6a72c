"""The routes of OpenAI's files and fine-tuning jobs API, under /v1/ (see openai_api.py)."""

from django.urls import path

from tinyforge.training.openai_files import FileContentView, FilesView, FileView
from tinyforge.training.openai_jobs import CancelJobView, JobCheckpointsView, JobEventsView, JobsView, JobView

urlpatterns = [
    path("files", FilesView.as_view(), name="openai-files"),
    path("files/<str:file_id>", FileView.as_view(), name="openai-file"),
    path("files/<str:file_id>/content", FileContentView.as_view(), name="openai-file-content"),
    path("fine_tuning/jobs", JobsView.as_view(), name="openai-jobs"),
    path("fine_tuning/jobs/<str:job_id>", JobView.as_view(), name="openai-job"),
    path("fine_tuning/jobs/<str:job_id>/cancel", CancelJobView.as_view(), name="openai-job-cancel"),
    path("fine_tuning/jobs/<str:job_id>/events", JobEventsView.as_view(), name="openai-job-events"),
    path("fine_tuning/jobs/<str:job_id>/checkpoints", JobCheckpointsView.as_view(), name="openai-job-checkpoints"),
]
