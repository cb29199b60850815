"""``modelport predict REF --input FILE [--output FILE]``: score a small file in-process."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from modelport.cli.common import existing_file, registry_from, to_plain
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

        pyarrow.csv.write_csv(table, tmp)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps(to_plain(row)) + "\n")
    tmp.replace(path)  # readers never see a half-written file


def _predict(args: argparse.Namespace) -> int:
    import modelport

    source = existing_file(args.input, "input file")
    table = read_table(source)
    missing = [c for c in args.keep if c not in table.column_names]
    if missing:
        raise InvalidInputError(f"--keep column {missing[0]!r} is not in {source.name}")
    features = table.drop_columns(args.keep) if args.keep else table
    if Path(args.ref).is_dir():
        model = modelport.load(args.ref, trusted=args.trusted)
    else:
        model = registry_from(args).load(args.ref, trusted=args.trusted)
    result = model.predict_batch(model.coerce(features))
    records = result.to_records()
    kept = {c: table.column(c).to_pylist() for c in args.keep}
    for i, rec in enumerate(records):
        for c, values in kept.items():
            rec[c] = values[i]
    if args.output:
        out = Path(args.output)
        rows = [{**{c: r[c] for c in args.keep}, **_flat(r)} for r in records]
        write_table(pa.Table.from_pylist(to_plain(rows)), out)
        print(f"wrote {len(records)} predictions from {model.ref} to {out}", file=sys.stderr)
        return 0
    if args.json:
        sys.stdout.write(json.dumps({"model": model.name, "version": model.version,
                                     "predictions": to_plain(records)}) + "\n")
    else:
        for rec in records:
            sys.stdout.write(json.dumps(to_plain(rec)) + "\n")
    return 0


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """``probabilities`` as one ``proba_<class>`` column per class, for tabular outputs."""
    out = {k: v for k, v in record.items() if k != "probabilities"}
    for cls, p in (record.get("probabilities") or {}).items():
        out[f"proba_{cls}"] = p
    return out
