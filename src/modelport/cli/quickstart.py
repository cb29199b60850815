"""``modelport quickstart``: train, save, register, alias and predict — on embedded defaults."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelport.cli.common import registry_from, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("quickstart",
                       help="train a small model, register it and predict (no servers needed)")
    p.add_argument("--name", default="breast-cancer", help="model name to register")
    p.add_argument("--no-serve", action="store_true",
                   help="stop after predicting instead of serving the model")
    p.add_argument("--port", type=int, default=8000, help="port to serve on")
    p.set_defaults(func=_quickstart)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _quickstart(args: argparse.Namespace) -> int:
    if not args.no_serve:  # a busy port must fail before anything is trained or registered
        from modelport.serving.config import ServeConfig
        from modelport.serving.server import check_port_free

        check_port_free(ServeConfig().host, args.port)
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import modelport

    settings = settings_from(args)
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    _say(f"1. training a classifier on scikit-learn's breast-cancer data ({len(x_train)} rows)")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))

    bundle = settings.home / "bundles" / args.name
    modelport.save(model, bundle, name=args.name, example=x_train.head(50), reference=x_train,
                   metrics={"accuracy": accuracy}, overwrite=True)
    _say(f"2. saved bundle {bundle} (test accuracy {accuracy:.3f})")

    registry = registry_from(args)
    version = registry.register(bundle, name=args.name)
    registry.set_alias(args.name, "production", version.version)
    _say(f"3. registered {args.name} version {version.version} and pointed "
         f"{args.name}@production at it")

    loaded = registry.load(f"{args.name}@production")
    rows = x_test.head(5)
    labels = loaded.predict(rows)
    proba = loaded.predict_proba(rows)
    _say(f"4. predictions of {args.name}@production for 5 held-out rows:")
    for label, p, truth in zip(labels.tolist(), proba.tolist(), y_test.head(5).tolist(),
                               strict=True):
        print(f"   predicted {label} (p={max(p):.3f}), actual {truth}")
    if args.no_serve:
        _say(f"done. try: modelport models show {args.name}@production")
        return 0
    return _serve(args, rows.head(1).to_dict(orient="records")[0])


def _serve(args: argparse.Namespace, record: dict[str, Any]) -> int:
    import json
    import shlex

    from modelport.serving import ServeConfig, run_server

    ref = f"{args.name}@production"
    body = shlex.quote(json.dumps(record))

    def ready(url: str) -> None:
        _say(f"5. serving {ref} at {url} (Ctrl-C to stop). Try:")
        print(f"curl -s -X POST {url}/predict/{args.name} "
              f"-H 'content-type: application/json' -d {body}", flush=True)
        _say(f"   docs: {url}/docs   metrics: {url}/metrics")

    return run_server(ServeConfig(models=(ref,), port=args.port), settings_from(args),
                      on_ready=ready)
