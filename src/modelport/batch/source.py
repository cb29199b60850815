"""Where a batch job reads rows: files (Parquet, CSV, JSON lines) on any fsspec store, or SQL.

A source streams Arrow record batches and never holds the whole input. ``chunks(rows)`` re-cuts
them into equally sized chunks, numbered from 0, so that the same input always yields the same
chunk boundaries: that is what lets a killed run resume chunk by chunk and a rerun reproduce its
output exactly.

>>> FileSource.guess_format("s3://bucket/day=1/part-0.parquet")
'parquet'
>>> is_sql_url("postgresql+psycopg://postgres@127.0.0.1/test"), is_sql_url("data/*.csv")
(True, False)
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import pyarrow as pa

from modelport.errors import ConfigurationError, InvalidInputError, NotFoundError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json",
           ".ndjson": "json", ".json": "json"}
SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite")


def is_sql_url(uri: str) -> bool:
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    return scheme in SQL_SCHEMES


def sql_engine_url(uri: str) -> str:
    """Pick the driver modelport installs when the URL names none (psycopg 3, PyMySQL)."""
    scheme, rest = uri.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("mysql", "mariadb"):
        return f"mysql+pymysql://{rest}"
    return uri


def redact(uri: str) -> str:
    """A URL without its password, for logs, fingerprints and summaries."""
    if "://" not in uri or "@" not in uri.split("://", 1)[1].split("/", 1)[0]:
        return uri
    scheme, rest = uri.split("://", 1)
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


class Source(ABC):
    """Rows to score. Override ``schema``, ``batches`` and ``fingerprint``."""

    @abstractmethod
    def schema(self) -> pa.Schema:
        """Column names and Arrow types, read without scanning the data."""

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every row, in a stable order, as record batches of any size."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes when the input changes (file sizes and times, or the query text)."""

    def total_rows(self) -> int | None:
        """The row count when it is known without scanning (Parquet footers), else ``None``."""
        return None

    def describe(self) -> str:
        return type(self).__name__

    def chunks(self, rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Batches of exactly ``rows`` rows (the last one shorter), numbered from 0."""
        pending: list[pa.RecordBatch] = []
        have = 0
        index = 0
        for batch in self.batches():
            while batch.num_rows:
                take = min(rows - have, batch.num_rows)
                pending.append(batch.slice(0, take))
                have += take
                batch = batch.slice(take)
                if have == rows:
                    yield index, _combine(pending)
                    index, pending, have = index + 1, [], 0
        if have:
            yield index, _combine(pending)


def _combine(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


class FileSource(Source):
    """Parquet, CSV or JSON-lines files: one file, a folder, or a glob; local or fsspec URL."""

    def __init__(self, uri: str, *, format: str | None = None,
                 storage_options: Mapping[str, Any] | None = None,
                 read_rows: int = 65536) -> None:
        self.uri = uri
        self.format = format
        self.storage_options = dict(storage_options or {})
        self.read_rows = read_rows
        #: CSV columns read as text whatever they look like (the scorer parses each cell)
        self.text_columns: tuple[str, ...] = ()
        self._files: list[dict[str, Any]] | None = None
        self._fs: Any = None

    @staticmethod
    def guess_format(path: str) -> str | None:
        lower = path.lower()
        for suffix, fmt in FORMATS.items():
            if lower.endswith(suffix):
                return fmt
        return None

    def _filesystem(self) -> Any:
        if self._fs is None:
            import fsspec

            self._fs, _ = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        return self._fs

    def files(self) -> list[dict[str, Any]]:
        """The matched files, sorted by path (each an fsspec ``info`` dict)."""
        if self._files is not None:
            return self._files
        fs = self._filesystem()
        _, path = _split(self.uri)
        try:
            if any(ch in path for ch in "*?["):
                found = fs.glob(path, detail=True)
                infos = [i for i in found.values() if i.get("type") == "file"]
            elif fs.isdir(path):
                infos = [i for i in fs.find(path, detail=True).values()
                         if i.get("type") == "file"]
            elif fs.exists(path):
                infos = [fs.info(path)]
            else:
                infos = []
        except OSError as exc:
            raise NotFoundError(f"cannot list input {self.uri!r}: {exc}") from None
        infos = [i for i in infos if not _hidden(i["name"], path)]
        if self.format is None:
            formats = {self.guess_format(i["name"]) for i in infos} - {None}
            if len(formats) > 1:
                raise ConfigurationError(
                    f"input {self.uri!r} mixes formats {sorted(f for f in formats if f)}; "
                    "narrow it with a glob such as '*.parquet' or pass --input-format"
                )
            self.format = formats.pop() if formats else None
        if self.format is not None:
            infos = [i for i in infos if self.guess_format(i["name"]) in (self.format, None)]
        if not infos:
            raise NotFoundError(
                f"no input files match {self.uri!r}; check the path (folders, globs and "
                "s3:// URLs work) and its storage options"
            )
        if self.format is None:
            raise ConfigurationError(
                f"cannot tell the format of {self.uri!r} from its name; pass --input-format "
                "parquet, csv or json"
            )
        if self.format not in ("parquet", "csv", "json"):
            raise ConfigurationError(
                f"unknown input format {self.format!r}; use parquet, csv or json"
            )
        self._files = sorted(infos, key=lambda i: str(i["name"]))
        return self._files

    def schema(self) -> pa.Schema:
        files = self.files()
        if self.format == "parquet":
            import pyarrow.parquet as pq

            with self._filesystem().open(files[0]["name"], "rb") as fh:
                return pq.read_schema(fh)
        for batch in self._read_file(files[0]["name"]):
            return batch.schema
        raise InvalidInputError(f"input file {files[0]['name']!r} has no rows")

    def total_rows(self) -> int | None:
        if self.format != "parquet":
            self.files()
        if self.format != "parquet":
            return None
        import pyarrow.parquet as pq

        total = 0
        for info in self.files():
            with self._filesystem().open(info["name"], "rb") as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
        return total

    def batches(self) -> Iterator[pa.RecordBatch]:
        schema: pa.Schema | None = None
        for info in self.files():
            for batch in self._read_file(info["name"]):
                if schema is None:
                    schema = batch.schema
                elif batch.schema != schema:
                    batch = _conform(batch, schema, info["name"])
                yield batch

    def _read_file(self, name: str) -> Iterator[pa.RecordBatch]:
        fs = self._filesystem()
        try:
            with fs.open(name, "rb") as fh:
                if self.format == "parquet":
                    import pyarrow.parquet as pq

                    parquet = pq.ParquetFile(fh)
                    # one reader per row group: a single reader over the whole file keeps
                    # memory it has decoded (RSS grew with the file, measured on pyarrow 26)
                    for group in range(parquet.metadata.num_row_groups):
                        yield from parquet.iter_batches(batch_size=self.read_rows,
                                                        row_groups=[group])
                elif self.format == "csv":
                    import pyarrow.csv as pcsv

                    reader = pcsv.open_csv(fh, read_options=pcsv.ReadOptions(
                        block_size=1 << 22), convert_options=pcsv.ConvertOptions(
                        column_types={n: pa.string() for n in self.text_columns}))
                    yield from reader
                else:
                    import pyarrow.json as pjson

                    yield from pjson.open_json(fh, read_options=pjson.ReadOptions(
                        block_size=1 << 22))
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(f"cannot read input file {name!r}: {exc}") from None

    def fingerprint(self) -> str:
        parts = [[str(i["name"]), i.get("size"), str(i.get("mtime") or i.get("LastModified")
                  or i.get("ETag") or i.get("created") or "")] for i in self.files()]
        return _digest({"format": self.format, "files": parts})

    def describe(self) -> str:
        return f"{self.uri} ({self.format}, {len(self.files())} file(s))"


class SqlSource(Source):
    """The rows of a SQL query, fetched in chunks through a server-side cursor.

    Give the query an ``ORDER BY`` when you need reruns and resumed runs to see rows in the same
    order (databases return unordered rows in any order they like).
    """

    def __init__(self, url: str, query: str, *, read_rows: int = 65536) -> None:
        self.url = url
        self.query = query
        self.read_rows = read_rows

    def _engine(self) -> Any:
        import sqlalchemy as sa

        try:
            return sa.create_engine(sql_engine_url(self.url))
        except Exception as exc:
            raise ConfigurationError(f"bad database URL {redact(self.url)!r}: {exc}") from None

    def batches(self) -> Iterator[pa.RecordBatch]:
        import sqlalchemy as sa

        engine = self._engine()
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True,
                                                max_row_buffer=self.read_rows).execute(
                    sa.text(self.query))
                try:
                    names = list(result.keys())
                    while True:
                        rows = result.fetchmany(self.read_rows)
                        if not rows:
                            break
                        columns = list(zip(*rows, strict=True))
                        yield pa.RecordBatch.from_arrays(
                            [_sql_column(col) for col in columns], names=names)
                finally:
                    result.close()  # the server-side cursor, also when the reader stops early
        except sa.exc.SQLAlchemyError as exc:
            raise InvalidInputError(
                f"the input query failed on {redact(self.url)}: {_first_line(exc)}"
            ) from None
        finally:
            engine.dispose()

    def schema(self) -> pa.Schema:
        batches = self.batches()
        assert isinstance(batches, Generator)
        try:
            return next(batches).schema
        except StopIteration:
            raise InvalidInputError("the input query returned no rows") from None
        finally:
            batches.close()  # releases the cursor and the connection now

    def fingerprint(self) -> str:
        return _digest({"url": redact(self.url), "query": self.query})

    def describe(self) -> str:
        return f"query on {redact(self.url)}"


def open_source(uri: str, *, query: str | None = None, format: str | None = None,
                storage_options: Mapping[str, Any] | None = None) -> Source:
    if is_sql_url(uri):
        if not query:
            raise ConfigurationError(
                f"input {redact(uri)} is a database; give the rows to score with --query "
                "'SELECT ... ORDER BY id'"
            )
        return SqlSource(uri, query)
    if query:
        raise ConfigurationError("--query needs a database URL as --input")
    return FileSource(uri, format=format, storage_options=storage_options)


def _sql_column(values: tuple[Any, ...]) -> pa.Array:
    from decimal import Decimal

    if any(isinstance(v, Decimal) for v in values):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array(list(values))


def _conform(batch: pa.RecordBatch, schema: pa.Schema, name: str) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_arrays(
            [batch.column(f.name).cast(f.type) for f in schema], schema=schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInputError(
            f"input file {name!r} has columns {batch.schema.names} of other types than the first "
            f"file ({schema.names}); score files of one layout per run"
        ) from None


def _split(uri: str) -> tuple[str, str]:
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        return scheme, rest
    return "file", uri


def _hidden(name: str, root: str) -> bool:
    """Files under ``_`` or ``.`` names below the given root (markers, staging) are not data."""
    wild = min((root.find(ch) for ch in "*?[" if ch in root), default=-1)
    if wild >= 0:
        root = root[:wild].rsplit("/", 1)[0]
    root = root.rstrip("/")
    rel = str(name)[len(root):] if str(name).startswith(root) else str(name).rsplit("/", 1)[-1]
    return any(p.startswith((".", "_")) for p in str(rel).split("/") if p)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
