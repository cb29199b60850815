"""``ChunkTask``: score one chunk and stage it — the unit of work every engine runs.

A task pickles small (the model's bundle folder, the sink's settings, the run's metadata), so the
Dask and Spark engines ship it to worker processes, which load the model once per process and
keep it in :data:`_RUNNERS`. The local engine seeds that cache with the model it already loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from modelport.batch.parquet_sink import part_name, write_part
from modelport.batch.scoring import ChunkScorer, RunMeta
from modelport.batch.sink import Sink
from modelport.bundle.accelerated import has_stored, load_stored
from modelport.bundle.model import Model
from modelport.core.batch import Batch, Result
from modelport.core.runner import Accelerate, Runner, RunnerOptions
from modelport.errors import ConflictError, ModelportError

log = logging.getLogger("modelport.batch")

# Worker-process cache: loading a model per chunk would cost more than scoring it. Keyed by the
# bundle folder, a digest of its files and the options, so one process serves runs of several
# models and never a stale one when a folder is rewritten in place.
_RUNNERS: dict[tuple[str, str, bool, str], Runner] = {}
_RUNNERS_LOCK = threading.Lock()


def prepare_runner(model: Model, accelerate: Accelerate, cache_dir: str | None = None) -> Runner:
    """A loaded runner: the ONNX form when allowed and faithful (the bundle's stored form, or a
    conversion from ``cache_dir`` when it was converted before), else the native model."""
    from modelport.batch.onnx_cache import ConvertedModelCache

    runner = Runner(model, RunnerOptions(accelerate=accelerate))
    # a bundle that stores its ONNX form needs no cache: Runner.load() checks and uses it
    cache = ConvertedModelCache(cache_dir) if (
        cache_dir and accelerate != "off" and not has_stored(model.manifest)) else None
    cached = cache.load(model) if cache is not None else None
    if cached is not None:
        runner.predictor, runner.accelerate_reason = cached
        runner.accelerated = True
        return runner
    try:
        runner.load()
    except ModuleNotFoundError as exc:
        if exc.name != "modelport.flavors.convert" or accelerate == "onnx":
            raise
        runner.accelerate_reason = "ONNX conversion is not available in this installation"
        return runner
    if cache is not None and runner.accelerated and model.flavor != "onnx":
        cache.save(model, runner.predictor, runner.accelerate_reason)
    return runner


def open_runner(path: str, *, trusted: bool, accelerate: Accelerate, cache_dir: str | None,
                expected_files: dict[str, str] | None = None, version: int | None = None
                ) -> Runner:
    """The runner for the bundle at ``path``: straight from its stored ONNX form or a cached
    conversion when there is one (the native framework is then never imported), else loaded and
    prepared."""
    from modelport.bundle.model import load_bundle

    if accelerate != "off":
        hit = _onnx_only(Path(path), expected_files, version, cache_dir)
        if hit is not None:
            model, reason = hit
            runner = Runner(model, RunnerOptions(accelerate="off"))
            runner.accelerated, runner.accelerate_reason = True, reason
            return runner
    model = load_bundle(path, trusted=trusted, expected_files=expected_files, version=version)
    return prepare_runner(model, accelerate, cache_dir)


def _onnx_only(path: Path, expected_files: dict[str, str] | None, version: int | None,
               cache_dir: str | None) -> tuple[Model, str] | None:
    """The bundle as a model predicting with its ONNX form only, without the native artifact."""
    from modelport.batch.onnx_cache import ConvertedModelCache
    from modelport.bundle.hashing import verify_tree
    from modelport.bundle.manifest import Manifest

    manifest = Manifest.read(path)
    if has_stored(manifest):
        files = dict(expected_files) if expected_files is not None else manifest.files
        verify_tree(path, files, what=f"model {manifest.name or path.name}")
        predictor, reason = load_stored(manifest, path)
        if predictor is not None:
            return Model(manifest, predictor, path=path, version=version), reason
        log.warning("model %s: %s; loading the native model", manifest.name, reason)
        return None
    if cache_dir:
        return ConvertedModelCache(cache_dir).load_bundle(path, expected_files=expected_files,
                                                          version=version)
    return None


def model_digest(model: Model) -> str:
    """Identifies a bundle's content: the SHA-256 of its files' recorded hashes."""
    return hashlib.sha256(json.dumps(sorted(model.manifest.files.items())).encode()).hexdigest()


def remember_runner(path: str, trusted: bool, accelerate: str, runner: Runner) -> str:
    """Seed this process's cache with ``runner``; returns the model digest tasks must ask for."""
    digest = model_digest(runner.model)
    with _RUNNERS_LOCK:
        _RUNNERS[(path, digest, trusted, accelerate)] = runner
    return digest


def runner_for(path: str, trusted: bool, accelerate: Accelerate,
               cache_dir: str | None = None, digest: str | None = None) -> Runner:
    """This process's runner for the bundle at ``path`` (loaded on first use).

    With ``digest``, the bundle must still hold the files the run started with."""
    with _RUNNERS_LOCK:
        if digest is not None:
            runner = _RUNNERS.get((path, digest, trusted, accelerate))
            if runner is not None:
                return runner
        runner = open_runner(path, trusted=trusted, accelerate=accelerate, cache_dir=cache_dir)
        found = model_digest(runner.model)
        if digest is not None and found != digest:
            raise ConflictError(
                f"the model bundle at {path} changed while the run was scoring; rerun it")
        _RUNNERS[(path, found, trusted, accelerate)] = runner
        return runner


@dataclass(frozen=True)
class ChunkCounts:
    index: int
    rows_in: int
    rejected: int
    first_reason: str | None = None


@dataclass
class ChunkTask:
    model_path: str
    trusted: bool
    accelerate: Accelerate
    meta: RunMeta
    sink: Sink
    keep: tuple[str, ...] = ()
    chunk_rows: int = 65536
    rejects_uri: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    model_digest: str | None = None
    #: the input is text (CSV): parse cells the model takes as numbers or booleans
    parse_text: bool = False
    #: prediction log stores / config file (``batch run --log``); the home the log lives under
    log: tuple[str, ...] = ()
    log_config: str | None = None
    log_home: str | None = None

    def scorer(self) -> ChunkScorer:
        runner = runner_for(self.model_path, self.trusted, self.accelerate, self.cache_dir,
                            self.model_digest)
        source = f"batch:{self.meta.run_id}"
        scorer: ChunkScorer

        def predict(batch: Batch) -> Result:
            ids = None
            if runner.events.has_observers:  # the log: rows are <run_id>-<row>
                ids = scorer.row_ids(*scorer.positions).to_pylist()
            return runner.predict(batch, source=source, row_ids=ids)

        scorer = ChunkScorer(runner.model.signature, predict, self.meta, keep=self.keep,
                             chunk_rows=self.chunk_rows, parse_text=self.parse_text)
        return scorer

    def run(self, index: int, rows: pa.RecordBatch) -> ChunkCounts:
        """Score chunk ``index`` and stage it; its rejects are written first, then the chunk.
        With the prediction log on, the chunk's predictions are logged before it is staged."""
        plog = _prediction_log(self) if (self.log or self.log_config) else None
        scored = self.scorer().score(index, rows)
        if plog is not None:
            runner = runner_for(self.model_path, self.trusted, self.accelerate, self.cache_dir,
                                self.model_digest)
            runner.events.flush()
            plog.flush()
        if scored.rejects is not None:
            if self.rejects_uri is None:
                raise ModelportError("rows were rejected but the run has no rejects location")
            fs, path = _fs(self.rejects_uri, self.storage_options)
            write_part(fs, path, part_name(index, self.meta.run_id), scored.rejects,
                       local=_is_local(fs))
        self.sink.write(self.meta.run_id, index, scored.output,
                        (scored.rows_in, scored.rejected))
        return ChunkCounts(index, scored.rows_in, scored.rejected, scored.first_reason())


_LOGS: dict[int, Any] = {}


def _prediction_log(task: ChunkTask) -> Any:
    """This process's prediction log for the task's runner (made and subscribed once)."""
    from modelport.log import LogConfig, PredictionLog, open_stores
    from modelport.settings import Settings

    runner = runner_for(task.model_path, task.trusted, task.accelerate, task.cache_dir,
                        task.model_digest)
    with _RUNNERS_LOCK:
        plog = _LOGS.get(id(runner))
        if plog is None:
            config = LogConfig.from_env(stores=task.log or None, config_file=task.log_config)
            settings = Settings.from_env(home=task.log_home) if task.log_home else None
            plog = PredictionLog(open_stores(config, settings), config)
            runner.events.subscribe(plog)
            _LOGS[id(runner)] = plog
    return plog


def run_chunk(task: ChunkTask, index: int, rows: pa.RecordBatch) -> ChunkCounts:
    """A module-level function for engines that ship callables by reference."""
    return task.run(index, rows)


def _fs(uri: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    return fs, str(path)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))
