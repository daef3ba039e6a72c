"""`tinyforge serve-platform`: the platform's inference service.

The same server as `tinyforge serve` (tinyforge.serving), with the models coming from the
deployments in the database and callers presenting API tokens with the `inference` scope.
Django is set up here, in the platform's part, never inside tinyforge.serving.
"""

from __future__ import annotations

import argparse
import os

from tinyforge.errors import TinyforgeError

DEFAULT_PORT = 8001


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve-platform",
        help="the platform's inference service: every team's deployments, for API tokens",
        description="Serve the platform's deployments behind the OpenAI-compatible API. New deployments are "
                    "picked up within seconds, stopped ones unloaded; callers present API tokens with the "
                    "'inference' scope and see their own team's deployments only.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from tinyforge.serving.commands import add_server_arguments

    add_server_arguments(parser)
    parser.set_defaults(func=serve_platform, port=DEFAULT_PORT)


def serve_platform(args) -> int:
    from tinyforge.serving.commands import check_server_arguments, run_server

    check_server_arguments(args)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyforge.settings")
    try:
        import django

        django.setup()
    except Exception as exc:  # a bad setting: say which, no traceback
        raise TinyforgeError(f"cannot load the settings: {exc}") from exc
    from tinyforge.deployments.inference import (
        CompletionLog, DeploymentRegistry, ServingStatsRecorder, TokenAuthenticator,
    )

    def start_stats(app) -> None:
        ServingStatsRecorder(app.state.service.metrics.registry).start()

    from django.conf import settings

    from tinyforge.ml.quality_budget import QualityBudget

    # One quality budget for int8, exported or served: deployments in int8 are checked at load against it.
    budget = QualityBudget(settings.EXPORT_MAX_LOSS_INCREASE, settings.EXPORT_MIN_TOKEN_AGREEMENT)
    run_server(DeploymentRegistry(), TokenAuthenticator(), args, what="the platform's deployments",
               prepare=start_stats, metrics_token=settings.METRICS_TOKEN, answer_log=CompletionLog(), budget=budget)
    return 0
