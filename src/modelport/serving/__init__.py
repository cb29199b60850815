"""Real-time serving: one ASGI app for every REST protocol, plus the process that runs it.

>>> from modelport.serving import ServeConfig
>>> ServeConfig(models=("churn@production",)).host
'127.0.0.1'

``create_app(service, config)`` builds the app over an ``InferenceService``;
``run_server(config, settings)`` serves until SIGTERM (what ``modelport serve`` calls).
"""

from __future__ import annotations

from modelport.serving.app import ServingApp, create_app
from modelport.serving.config import Batching, Limits, ServeConfig
from modelport.serving.server import run_server

__all__ = ["Batching", "Limits", "ServeConfig", "ServingApp", "create_app", "run_server"]
