"""``BatchJob``: score a whole input into an output, atomically, resumably, on any engine.

>>> spec = JobSpec(ref="churn@production", input="data/*.parquet", output="out/scores")
>>> spec.with_changes(resume=True).resume
True

The job is the batch adapter's conductor: it loads the model once, reads the input as a stream
of fixed-size chunks, lets an engine score and stage them, and commits the result in one step.
A run is identified by its run id — by default a digest of the model version, the input's
fingerprint, the output and the options — so running the same command twice is a no-op, and a
killed run continued with ``resume=True`` scores only the chunks it had not staged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from modelport.batch.engines import make_engine
from modelport.batch.progress import Progress
from modelport.batch.scoring import RunMeta, check_schema
from modelport.batch.sink import Sink
from modelport.batch.source import FileSource, Source, is_sql_url, open_source
from modelport.batch.task import ChunkTask, open_runner, prepare_runner, remember_runner
from modelport.bundle.model import Model
from modelport.bundle.signature import Signature, extra_allowed
from modelport.core.runner import Accelerate, Runner
from modelport.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.settings import Settings

log = logging.getLogger("modelport.batch")


@dataclass(frozen=True)
class JobSpec:
    """Everything ``modelport batch run`` is told; plain data, stored as-is by the scheduler."""

    ref: str
    input: str
    output: str
    query: str | None = None
    input_format: str | None = None
    table: str | None = None
    mode: str = "replace"
    key: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    prefix: str | None = None
    ttl: int | None = None
    rejects: str | None = None
    max_reject_rate: float | None = None
    chunk_rows: int = 65536
    engine: str = "local"
    engine_address: str | None = None
    workers: int | None = None
    run_id: str | None = None
    resume: bool = False
    accelerate: Accelerate = "auto"
    trusted: bool = False
    #: input columns the model does not take: ignore, refuse, or passthrough (kept in the output)
    extra_columns: str = "ignore"
    #: database schema of a SQL output's bookkeeping tables (default: the connection's)
    state_schema: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)
    #: prediction log stores (``--log``) and its YAML config (``--log-config``); empty: off
    log: tuple[str, ...] = ()
    log_config: str | None = None

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ConfigurationError("--chunk-rows must be at least 1")
        if self.max_reject_rate is not None and not 0 <= self.max_reject_rate <= 1:
            raise ConfigurationError("--max-reject-rate is a fraction between 0 and 1 (0.01 = 1%)")
        if self.accelerate not in ("auto", "onnx", "off"):
            raise ConfigurationError("--accelerate is one of auto, onnx, off")
        extra_allowed(self.extra_columns)  # a known policy

    def with_changes(self, **changes: Any) -> JobSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("key", "keep", "log"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


@dataclass
class Summary:
    """What a run did; ``--json`` prints it."""

    run_id: str
    model: str
    version: int | None
    input: str
    output: str
    engine: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    duration_s: float = 0.0
    #: of ``duration_s``, the time spent loading the model and preparing its ONNX form
    load_s: float = 0.0
    rows_per_s: float = 0.0
    chunks: int = 0
    resumed_chunks: int = 0
    noop: bool = False
    rejects: str | None = None
    first_reject_reason: str | None = None
    accelerated: bool = False
    #: why the model runs under ONNX Runtime, or why not
    acceleration: str | None = None
    scored_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def open_sink(spec: JobSpec, model_name: str) -> Sink:
    out = spec.output
    if is_sql_url(out):
        from modelport.batch.sql_sink import SqlSink

        if not spec.table:
            raise ConfigurationError(f"output {out.split('://')[0]}:// is a database; name the "
                                     "table with --table NAME")
        return SqlSink(out, spec.table, mode=spec.mode, key=spec.key,  # type: ignore[arg-type]
                       state_schema=spec.state_schema)
    if spec.table:
        raise ConfigurationError("--table needs a database URL as --output")
    if out.startswith(("redis://", "rediss://", "unix://")):
        from modelport.batch.redis_sink import RedisSink

        return RedisSink(out, prefix=spec.prefix or f"modelport:{model_name}:", key=spec.key,
                         ttl=spec.ttl)
    from modelport.batch.parquet_sink import ParquetSink

    suffix = out.rstrip("/").rsplit("/", 1)[-1].rpartition(".")[2].lower() \
        if "." in out.rstrip("/").rsplit("/", 1)[-1] else ""
    if suffix in ("csv", "json", "jsonl", "tsv", "txt", "xlsx") and spec.mode != "replace":
        raise ConfigurationError("--mode applies to SQL outputs; a file output is replaced "
                                 "as a whole")
    if suffix == "csv":
        from modelport.batch.csv_sink import CsvSink

        return CsvSink(out, storage_options=spec.storage_options)
    if suffix in ("json", "jsonl", "tsv", "txt", "xlsx"):
        raise ConfigurationError(
            f"--output {out!r}: batch writes a Parquet dataset (a folder name), a .csv file, a "
            "database table or Redis; choose one of those")
    if spec.mode != "replace":
        raise ConfigurationError("--mode applies to SQL outputs; a Parquet output is replaced "
                                 "as a whole")
    return ParquetSink(out, storage_options=spec.storage_options)


class BatchJob:
    """One run of a ``JobSpec``. ``run()`` does the work and returns its :class:`Summary`."""

    def __init__(self, spec: JobSpec, *, settings: Settings | None = None,
                 registry: Registry | None = None, model: Model | None = None,
                 progress: Progress | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.spec = spec
        self.settings = settings
        self.registry = registry
        self.model = model
        self.progress = progress
        self.clock = clock
        self._load_s = 0.0

    # ------------------------------------------------------------------ pieces
    def load_runner(self) -> Runner:
        """The model, ready: its ONNX form when allowed and faithful (cached across runs)."""
        spec = self.spec
        cache_dir = str(self._settings().cache_dir / "onnx")
        if self.model is not None:
            return prepare_runner(self.model, spec.accelerate, cache_dir)
        path = Path(spec.ref)
        files: dict[str, str] | None = None
        version: int | None = None
        if not path.is_dir():
            registry = self.registry
            if registry is None:
                from modelport.registry import Registry

                registry = Registry.from_settings(self._settings())
            found = registry.resolve(spec.ref)
            path, files, version = registry.fetch(found), dict(found.files), found.version
        return open_runner(str(path), trusted=spec.trusted, accelerate=spec.accelerate,
                           cache_dir=cache_dir, expected_files=files, version=version)

    def _settings(self) -> Settings:
        if self.settings is None:
            from modelport.settings import Settings

            self.settings = Settings.from_env()
        return self.settings

    def source(self, signature: Signature | None = None) -> Source:
        """The input; CSV columns the model takes as numbers or booleans are read as text and
        parsed cell by cell when scored, so that one bad cell rejects only its row."""
        source = open_source(self.spec.input, query=self.spec.query,
                             format=self.spec.input_format,
                             storage_options=self.spec.storage_options)
        if signature is not None and isinstance(source, FileSource):
            source.text_columns = tuple(s.name for s in signature.inputs
                                        if s.dtype != "string" and not s.shape)
        return source

    def run_id(self, model: Model, source: Source, sink: Sink) -> str:
        if self.spec.run_id:
            if not all(c.isalnum() or c in "-_." for c in self.spec.run_id):
                raise ConfigurationError("--run-id: use letters, digits, '-', '_' and '.' only")
            return self.spec.run_id
        identity = {
            "model": model.name, "version": model.version,
            "files": model.manifest.files if model.version is None else None,
            "input": source.fingerprint(), "output": sink.describe(),
            "keep": self.spec.keep, "key": self.spec.key, "chunk_rows": self.spec.chunk_rows,
            "prefix": self.spec.prefix, "ttl": self.spec.ttl,
            # the output schema (modelport.core.schema); a new one makes new runs
            "schema": 2,
        }
        if self.spec.extra_columns != "ignore":
            identity["extra_columns"] = self.spec.extra_columns
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
        return f"run-{digest.hexdigest()[:16]}"

    # ------------------------------------------------------------------ the run
    def run(self) -> Summary:
        spec = self.spec
        started = time.perf_counter()
        runner = self.load_runner()
        self._load_s = time.perf_counter() - started
        source = self.source(runner.model.signature)
        sink = open_sink(spec, runner.model.name)
        try:
            return self._run(runner, source, sink, started)
        finally:
            sink.close()

    def _run(self, runner: Runner, source: Source, sink: Sink, started: float) -> Summary:
        spec = self.spec
        model = runner.model
        run_id = self.run_id(model, source, sink)
        summary = Summary(run_id=run_id, model=model.name, version=model.version,
                          input=source.describe(), output=sink.describe(), engine=spec.engine)
        previous = sink.committed(run_id)
        if previous is not None:
            log.info("run %s already committed to %s; nothing to do", run_id, sink.describe())
            return dataclasses.replace(Summary(**_known(previous)), noop=True)

        input_schema = source.schema()
        keep = self._keep(model, input_schema)
        check_schema(model.signature, keep, input_schema)
        meta = {"scored_at": self.clock().isoformat(), "model": model.name,
                "version": model.version}
        staged = sink.open(run_id, resume=spec.resume, meta=meta)
        run_meta = RunMeta(run_id, model.name, model.version,
                           datetime.fromisoformat(staged.meta["scored_at"]))
        summary.scored_at = str(staged.meta["scored_at"])
        summary.rejects = spec.rejects or sink.rejects_uri(run_id) or str(
            self._settings().home / "batch" / "rejects" / run_id)

        if model.path is None:
            raise ConfigurationError(f"model {model.ref} has no bundle folder to load from")
        cache_dir = str(self._settings().cache_dir / "onnx")
        summary.load_s = round(self._load_s, 3)
        summary.accelerated = runner.accelerated
        summary.acceleration = runner.accelerate_reason
        model_path = str(model.path)
        digest = remember_runner(model_path, spec.trusted, spec.accelerate, runner)
        task = ChunkTask(model_path, spec.trusted, spec.accelerate, run_meta, sink,
                         keep=keep, chunk_rows=spec.chunk_rows, rejects_uri=summary.rejects,
                         storage_options=spec.storage_options, cache_dir=cache_dir,
                         model_digest=digest, parse_text=_is_text(source),
                         log=spec.log, log_config=spec.log_config,
                         log_home=str(self._settings().home))
        progress = self.progress or Progress(source.total_rows())
        for rows_in, rejected in staged.done.values():
            summary.rows_in += rows_in
            summary.rejected += rejected
            progress.skip(rows_in)
        summary.resumed_chunks = len(staged.done)

        engine = make_engine(spec.engine, address=spec.engine_address, workers=spec.workers)
        summary.engine = engine.describe()
        summary.chunks = len(staged.done)
        try:
            for counts in engine.map(task, _todo(source, spec.chunk_rows, staged.done)):
                summary.chunks += 1
                summary.rows_in += counts.rows_in
                summary.rejected += counts.rejected
                summary.first_reject_reason = summary.first_reject_reason or counts.first_reason
                progress.advance(counts.rows_in, counts.rejected)
        finally:
            engine.close()
            progress.finish()
        summary.rows_out = summary.rows_in - summary.rejected
        self._check_rejects(summary)
        summary.duration_s = round(time.perf_counter() - started, 3)
        summary.rows_per_s = round(summary.rows_in / summary.duration_s, 1) \
            if summary.duration_s else 0.0
        sink.commit(run_id, summary.to_dict())
        return summary

    def _keep(self, model: Model, schema: pa.Schema) -> tuple[str, ...]:
        """The columns copied into the output: ``--keep``, and under ``--extra-columns
        passthrough`` every other column the model does not take; ``refuse`` fails on them."""
        keep = tuple(self.spec.keep)
        extra = [n for n in model.signature.extra_names(schema.names) if n not in keep]
        if self.spec.extra_columns == "passthrough":
            return keep + tuple(extra)
        if self.spec.extra_columns == "refuse" and extra:
            raise ConfigurationError(
                f"the input has column {extra[0]!r}, which the model does not take, and "
                "--extra-columns is refuse; keep it with --keep, or pass --extra-columns ignore "
                "or passthrough")
        return keep

    def _check_rejects(self, summary: Summary) -> None:
        """A run over ``--max-reject-rate`` (by default: one where every row was rejected)
        publishes nothing and fails."""
        if not summary.rows_in:
            return
        limit = self.spec.max_reject_rate
        rate = summary.rejected / summary.rows_in
        if limit is None:
            if summary.rejected < summary.rows_in:
                return
            raise InvalidInputError(
                f"all {summary.rows_in:,} rows failed the model's signature; nothing was "
                f"published. First reason: {summary.first_reject_reason}. The rejected rows are "
                f"in {summary.rejects}; fix the input and rerun")
        if rate > limit:
            raise InvalidInputError(
                f"{summary.rejected:,} of {summary.rows_in:,} rows ({rate:.2%}) failed the model's "
                f"signature, above --max-reject-rate {limit:g}; nothing was published. First "
                f"reason: {summary.first_reject_reason}. The rejected rows are in "
                f"{summary.rejects}; fix the input and rerun (add --resume to keep the scored "
                "chunks)")


def _todo(source: Source, rows: int, done: dict[int, tuple[int, int]]
          ) -> Iterator[tuple[int, pa.RecordBatch]]:
    for index, batch in source.chunks(rows):
        if index not in done:
            yield index, batch


def _is_text(source: Source) -> bool:
    """Whether the input's cells are text (CSV): numbers are then parsed cell by cell."""
    return getattr(source, "format", None) == "csv"


def _known(data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Summary)}
    return {k: v for k, v in data.items() if k in names}


def run_job(spec: JobSpec, **kwargs: Any) -> Summary:
    """Run ``spec`` once (see :class:`BatchJob` for the keyword arguments)."""
    return BatchJob(spec, **kwargs).run()


__all__ = ["BatchJob", "JobSpec", "Summary", "open_sink", "run_job"]
