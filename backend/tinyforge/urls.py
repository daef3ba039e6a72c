"""URLs: the REST API under /api/v1/, its schema, the admin, and the dashboard (everything else)."""

from django.conf import settings
from django.contrib import admin
from django.http import FileResponse, Http404
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from tinyforge.accounts import views as accounts
from tinyforge.core import views as core
from tinyforge.datasets import views as datasets
from tinyforge.deployments import views as deployments
from tinyforge.deployments.proxy import openai_proxy
from tinyforge.evals import views as evals
from tinyforge.projects import views as projects
from tinyforge.tracking import views as tracking
from tinyforge.training import views as training

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("teams", accounts.TeamViewSet, basename="team")
router.register("memberships", accounts.MembershipViewSet, basename="membership")
router.register("invitations", accounts.InvitationViewSet, basename="invitation")
router.register("tokens", accounts.ApiTokenViewSet, basename="apitoken")
router.register("projects", projects.ProjectViewSet, basename="project")
router.register("datasets", datasets.DatasetViewSet, basename="dataset")
router.register("dataset-versions", datasets.DatasetVersionViewSet, basename="datasetversion")
router.register("connections", datasets.DataConnectionViewSet, basename="dataconnection")
router.register("runs", training.TrainingRunViewSet, basename="trainingrun")
router.register("checkpoints", training.CheckpointViewSet, basename="checkpoint")
router.register("deployments", deployments.DeploymentViewSet, basename="deployment")
router.register("exports", deployments.ExportViewSet, basename="export")
router.register("completions", deployments.CompletionViewSet, basename="completion")
router.register("feedback", deployments.FeedbackViewSet, basename="feedback")
router.register("eval-sets", evals.EvalSetViewSet, basename="evalset")
router.register("eval-set-versions", evals.EvalSetVersionViewSet, basename="evalsetversion")
router.register("evaluations", evals.EvaluationViewSet, basename="evaluation")
router.register("gates", evals.GateViewSet, basename="gate")
router.register("events", core.EventViewSet, basename="event")
router.register("audit-events", core.AuditEventViewSet, basename="auditevent")
router.register("tracking-settings", tracking.TeamTrackingViewSet, basename="teamtracking")
router.register("tracked-runs", tracking.TrackedRunViewSet, basename="trackedrun")

api_v1 = [
    path("auth/csrf/", accounts.CsrfView.as_view(), name="auth-csrf"),
    path("auth/login/", accounts.LoginView.as_view(), name="auth-login"),
    path("auth/logout/", accounts.LogoutView.as_view(), name="auth-logout"),
    path("auth/me/", accounts.MeView.as_view(), name="auth-me"),
    path("health/", core.HealthView.as_view(), name="health"),
    path("", include(router.urls)),
]


def dashboard(request, route=""):
    """The single-page app's index.html for any non-API path, so client-side routes survive a
    reload. WhiteNoise serves the built files themselves before Django is reached."""
    index = settings.FRONTEND_DIR / "index.html"
    if not index.is_file():
        raise Http404("The dashboard is not built: run `npm run build` in frontend/.")
    return FileResponse(index.open("rb"), content_type="text/html")


urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view: its start-up script is a file of its own, so the page needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    # OpenAI's fine-tuning API (files and jobs); the rest of /v1/ is the inference service's.
    path("v1/", include("tinyforge.training.openai_urls")),
    # OpenAI's Evals API over eval sets and evaluations.
    path("v1/", include("tinyforge.evals.openai_api")),
    # Models and completions are the inference service's: passed on when they reach the web process.
    re_path(r"^v1/(?P<path>models|models/.+|chat/completions|completions)$", openai_proxy, name="openai-inference"),
    re_path(r"^(?!api/|admin/|static/|django-rq/|v1/)(?P<route>.*)$", dashboard, name="dashboard"),
]

handler400 = "tinyforge.core.errors.handler400"
handler403 = "tinyforge.core.errors.handler403"
handler404 = "tinyforge.core.errors.handler404"
handler500 = "tinyforge.core.errors.handler500"
