"""The serving app inside an AWS Lambda function (used by the generated ``handler.py``).

::

    app = load_app(Path(__file__).parent / "model", name="churn", version=3)
    handler = Mangum(app, lifespan="off")

The model loads, and the app starts, when the handler module is imported — once per execution
environment — so warm invocations pay nothing: Mangum would otherwise run the ASGI lifespan
(and so the model load) on every invocation. The app is the one ``modelport serve`` runs, with
the same routes (simple JSON, V2, KServe V1, MLflow, /metrics); hot reload is off (the model is
part of the function).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from modelport.serving.app import ServingApp


def load_app(directory: Path, *, name: str, version: int) -> ServingApp:
    """The serving app for the bundle in ``directory``, model loaded and started."""
    from modelport.core.service import InferenceService
    from modelport.export.bundle_registry import BundleRegistry
    from modelport.registry import Registry
    from modelport.serving.app import create_app
    from modelport.serving.config import ServeConfig

    config = ServeConfig(models=(f"{name}:{version}",), poll_interval_s=0.0)
    registry = BundleRegistry(directory, name=name, version=version)
    service = InferenceService(cast(Registry, registry), options=config.runner_options())
    app = create_app(service, config)
    app.load_models()
    # Mangum runs each invocation on this thread's event loop: start the app on it now
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    loop.run_until_complete(app.startup())
    return app
