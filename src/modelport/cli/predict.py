"""``modelport predict REF --input FILE [--output FILE]``: score a small file in-process."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from modelport.batch.scoring import ChunkScorer, RunMeta, ScoredChunk, check_schema
from modelport.cli.common import (
    add_extra_columns,
    existing_file,
    read_registry,
    to_plain,
    writable_output,
)
from modelport.core.batch import Batch, Result
from modelport.core.schema import PredictionSchema, lists_as_json, timestamp_text
from modelport.errors import ConfigurationError, InvalidInputError

FORMATS = (".csv", ".parquet", ".jsonl", ".json")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("predict", help="predict a CSV / Parquet / JSON-lines file with a model")
    p.add_argument("ref", help="NAME, NAME:VERSION, NAME@ALIAS or a bundle directory")
    p.add_argument("--input", "-i", required=True, metavar="FILE",
                   help="input rows (.csv, .parquet or .jsonl)")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="write predictions here (.csv, .parquet or .jsonl) instead of printing")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="copy this input column (an id) into the output; not fed to the model")
    p.add_argument("--trusted", action="store_true",
                   help="allow pickle-based artifacts (only for models you trust)")
    p.add_argument("--accelerate", default="auto", choices=["auto", "onnx", "off"],
                   help="predict with the bundle's stored ONNX form when it has one that "
                        "matches the native model (auto, the default; the framework is then "
                        "not even imported), require ONNX (onnx), or use the native model (off)")
    p.add_argument("--max-reject-rate", type=float, metavar="FRACTION",
                   help="fail when more rows than this are rejected (default: fail only when "
                        "every row is rejected); rejected rows are listed on stderr")
    add_extra_columns(p)
    p.set_defaults(func=_predict)


def read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv

            return pyarrow.csv.read_csv(path)
        if suffix == ".parquet":
            import pyarrow.parquet

            return pyarrow.parquet.read_table(path)
        if suffix in (".jsonl", ".json"):
            import pyarrow.json

            return pyarrow.json.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"cannot read {path.name}: {exc}") from None
    raise ConfigurationError(
        f"unsupported input format {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}"
    )


def write_table(table: pa.Table, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigurationError(
            f"unsupported output format {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".parquet":
        import pyarrow.parquet

        pyarrow.parquet.write_table(table, tmp)
    elif suffix == ".csv":
        import pyarrow.csv

        pyarrow.csv.write_csv(lists_as_json(table), tmp)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in table.to_pylist():
                row = {k: timestamp_text(v) if isinstance(v, datetime) else v
                       for k, v in row.items()}
                fh.write(json.dumps(to_plain(row)) + "\n")
    tmp.replace(path)  # readers never see a half-written file


def _predict(args: argparse.Namespace) -> int:
    source = existing_file(args.input, "input file")
    if args.output:  # before any work: a missing folder or a read-only one fails now
        writable_output(args.output)
    table = read_table(source)
    missing = [c for c in args.keep if c not in table.column_names]
    if missing:
        raise InvalidInputError(f"--keep column {missing[0]!r} is not in {source.name}")
    from modelport.bundle.accelerated import has_stored
    from modelport.bundle.model import load_bundle
    from modelport.core.runner import Runner, RunnerOptions

    lazy = args.accelerate != "off"  # the native model only if the ONNX form cannot serve
    if Path(args.ref).is_dir():
        model = load_bundle(args.ref, trusted=args.trusted, lazy=lazy)
    else:
        model = read_registry(args).load(args.ref, trusted=args.trusted, lazy=lazy)
    accelerate = args.accelerate
    if accelerate == "auto" and not has_stored(model.manifest):
        accelerate = "off"  # converting now would cost more than predicting natively
    runner = Runner(model, RunnerOptions(accelerate=accelerate)).load()
    scored, request_id = score_table(model, table, keep=args.keep, extra=args.extra_columns,
                                     text=source.suffix.lower() == ".csv",
                                     predict=runner.predict)
    _report_rejects(scored, args.max_reject_rate)
    output = scored.output
    if args.output:
        out = Path(args.output)
        write_table(output, out)
        print(f"wrote {output.num_rows} predictions from {model.ref} to {out}", file=sys.stderr)
        return 0
    schema = PredictionSchema.of(model.signature, keys=_keys(output))
    records = records_of(output, schema)
    if args.json:
        sys.stdout.write(json.dumps({"model": model.name, "version": model.version,
                                     "prediction_id": request_id,
                                     "predictions": to_plain(records)}) + "\n")
    else:
        for rec in records:
            sys.stdout.write(json.dumps(to_plain(rec)) + "\n")
    return 0


def score_table(model: Any, table: pa.Table, *, keep: list[str], extra: str, text: bool,
                predict: Callable[[Batch], Result] | None = None
                ) -> tuple[ScoredChunk, str]:
    """``table`` scored as one request: rows in the tabular form of the prediction schema with
    ids ``P-<row>`` (``P`` alone for a single row), rejected rows apart. ``predict``: what
    scores a batch (default ``model.predict_batch``, the native model)."""
    from modelport.core.runner import new_id

    keep = list(keep)
    extras = [n for n in model.signature.extra_names(table.column_names) if n not in keep]
    if extra == "passthrough":
        keep += extras
    elif extra == "refuse" and extras:
        raise InvalidInputError(
            f"the input has column {extras[0]!r}, which the model does not take; keep it with "
            "--keep, or pass --extra-columns ignore or passthrough", field=extras[0])
    check_schema(model.signature, keep, table.schema)
    request_id = new_id()
    meta = RunMeta(request_id, model.name, model.version, datetime.now(UTC))
    scorer = ChunkScorer(model.signature, predict or model.predict_batch, meta, keep=keep,
                         chunk_rows=max(table.num_rows, 1), parse_text=text)
    rows = table.combine_chunks().to_batches()
    batch = rows[0] if len(rows) == 1 else pa.RecordBatch.from_pylist([], schema=table.schema)
    scored = scorer.score(0, batch)
    if table.num_rows == 1 and scored.output.num_rows == 1:  # a single prediction's id is P
        ids = scored.output.column_names.index("prediction_id")
        scored.output = scored.output.set_column(ids, "prediction_id",
                                                 pa.array([request_id], pa.string()))
    return scored, request_id


def records_of(table: pa.Table, schema: PredictionSchema) -> list[dict[str, Any]]:
    """The record form of tabular-form rows (``probability_<class>`` into ``probabilities``)."""
    out = []
    for row in table.to_pylist():
        record: dict[str, Any] = {}
        probabilities = {c: row.pop(f"probability_{c}") for c in schema.classes or ()}
        for name, value in row.items():
            if name == "model" and schema.classes is not None:
                record["probabilities"] = probabilities
            record[name] = timestamp_text(value) if isinstance(value, datetime) else value
        out.append(record)
    return out


def _keys(table: pa.Table) -> list[str]:
    names: list[str] = list(table.column_names)
    return names[:names.index("prediction_id")]


def _report_rejects(scored: ScoredChunk, max_rate: float | None) -> None:
    """Each rejected row on stderr; every row (or more than ``max_rate``) rejected fails."""
    if scored.rejects is None:
        return
    reasons = scored.rejects.column("reason").to_pylist()
    for reason in reasons[:_SHOWN]:
        print(f"rejected {reason}", file=sys.stderr)
    if len(reasons) > _SHOWN:
        print(f"… and {len(reasons) - _SHOWN} more rejected rows", file=sys.stderr)
    rate = scored.rejected / scored.rows_in
    if scored.rejected == scored.rows_in:
        raise InvalidInputError(f"all {scored.rows_in} rows were rejected; first: {reasons[0]}")
    if max_rate is not None and rate > max_rate:
        raise InvalidInputError(
            f"{scored.rejected} of {scored.rows_in} rows ({rate:.2%}) were rejected, above "
            f"--max-reject-rate {max_rate:g}; first: {reasons[0]}")


_SHOWN = 20
