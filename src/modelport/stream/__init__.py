"""Streaming inference: messages from Kafka or Redis Streams through the inference core into a
topic, a stream or a database table, committed only after the outputs are durable.

Pieces: :class:`~modelport.stream.source.Source` and :class:`~modelport.stream.sink.Sink`
(protocols; a :class:`~modelport.stream.sink.PipelinedSink` sends and flushes apart), their
Kafka / Redis Streams / SQL implementations, the :class:`~modelport.stream.loop.StreamLoop` that
ties them to a model, and :class:`~modelport.stream.metrics.StreamMetrics`.
"""

from __future__ import annotations

from modelport.stream.codec import MessageCodec
from modelport.stream.endpoints import Endpoint, open_sink, open_source, parse
from modelport.stream.loop import Backoff, BatchReport, StreamLoop, StreamOptions
from modelport.stream.message import Message, Output
from modelport.stream.metrics import StreamMetrics
from modelport.stream.sink import (
    PipelinedSink,
    RefusedOutputs,
    Sink,
    SinkError,
    TransactionalSink,
)
from modelport.stream.source import Source

__all__ = [
    "Backoff",
    "BatchReport",
    "Endpoint",
    "Message",
    "MessageCodec",
    "Output",
    "PipelinedSink",
    "RefusedOutputs",
    "Sink",
    "SinkError",
    "Source",
    "StreamLoop",
    "StreamMetrics",
    "StreamOptions",
    "TransactionalSink",
    "open_sink",
    "open_source",
    "parse",
]
