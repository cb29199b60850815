"""The ``modelport`` command: parse, call the library, print.

Each command group lives in its own module under ``modelport.cli`` and exposes
``register(subparsers)``, which adds its parsers and sets ``func(args) -> int`` on each. Errors are
mapped to exit codes here, in one table; a user mistake prints one line on stderr, never a
traceback (set ``MODELPORT_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from modelport import errors

#: command modules, in the order they appear in ``--help``
COMMAND_MODULES = [
    "modelport.cli.models",
    "modelport.cli.predict",
    "modelport.cli.importer",
    "modelport.cli.quickstart",
    "modelport.cli.serve",
    "modelport.cli.auth",
    "modelport.cli.batch",
    "modelport.cli.stream",
    "modelport.cli.log",
    "modelport.cli.feedback",
    "modelport.cli.endpoint",
    "modelport.cli.validate",
    "modelport.cli.export",
    "modelport.cli.package",
    "modelport.cli.monitor",
]

#: exit code per error class (most specific first); 1 is the fallback for any ModelportError
EXIT_CODES: list[tuple[type[errors.ModelportError], int]] = [
    (errors.InvalidInputError, 3),
    (errors.InvalidReferenceError, 3),
    (errors.ConfigurationError, 2),
    (errors.NotFoundError, 4),
    (errors.ConflictError, 5),
    (errors.IntegrityError, 6),
    (errors.UntrustedArtifactError, 7),
    (errors.UnsupportedModelError, 8),
    (errors.ModelLoadError, 9),
    (errors.PredictionError, 10),
    (errors.StorageError, 11),
    (errors.AuthenticationError, 13),
    (errors.PermissionDeniedError, 13),
    (errors.OverloadedError, 12),
    (errors.RequestTimeoutError, 12),
]
USAGE_EXIT = 2


def exit_code(exc: errors.ModelportError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def error_code(exc: errors.ModelportError) -> str:
    """The error's kind as a word for ``--json`` output: ``NotFoundError`` -> ``not_found``."""
    for cls in type(exc).__mro__:
        if cls.__module__ == errors.__name__ and cls is not errors.ModelportError:
            return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__.removesuffix("Error")).lower()
    return "error"


#: set by main(): whether errors are printed as JSON objects (``--json``)
_json_errors = False


def report_error(message: str, code: str, exit_status: int) -> int:
    """Print one error on stderr: ``error: …`` or, with ``--json``, one JSON object."""
    if _json_errors:
        sys.stderr.write(json.dumps({"error": message, "code": code, "exit": exit_status})
                         + "\n")
    else:
        sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return exit_status


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        report_error(f"{message} (see '{self.prog} --help')", "usage", USAGE_EXIT)
        self.exit(USAGE_EXIT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modelport",
                     description="Take a trained model into production.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--registry", metavar="URL",
                        help="registry database URL (default: MODELPORT_REGISTRY_URL or "
                             "sqlite under MODELPORT_HOME)")
    parser.add_argument("--artifacts", metavar="URI",
                        help="artifact store (default: MODELPORT_ARTIFACTS or a local folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command group not built yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


_GLOBAL_FLAGS = {"--json": 0, "-v": 0, "--verbose": 0, "--registry": 1, "--artifacts": 1}


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """Let global options appear anywhere (``modelport models list --json``)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_FLAGS:
            takes = _GLOBAL_FLAGS[name] and "=" not in arg
            front.extend(argv[i:i + 1 + takes])
            i += 1 + takes
            continue
        rest.append(arg)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    global _json_errors
    argv = hoist_global_flags(sys.argv[1:] if argv is None else argv)
    _json_errors = "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return USAGE_EXIT
    try:
        return int(args.func(args) or 0)
    except errors.ModelportError as exc:
        if os.environ.get("MODELPORT_DEBUG"):
            raise
        return report_error(str(exc), error_code(exc), exit_code(exc))
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or socket the user named: say which and why, in one line
        if os.environ.get("MODELPORT_DEBUG") or exc.errno is None:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        return report_error(f"cannot use{where}: {exc.strerror}", "storage", 11)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
