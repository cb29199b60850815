"""The model registry: named models, immutable numbered versions, aliases, tags, audit.

Metadata lives in SQL (SQLite by default, PostgreSQL for teams), artifacts in any fsspec store
(a local folder by default, S3-compatible stores for teams). See :class:`Registry`.
"""

from __future__ import annotations

from modelport.registry.records import AuditEntry, ModelInfo, ModelVersion
from modelport.registry.refs import Ref, parse_ref
from modelport.registry.registry import Registry

__all__ = ["AuditEntry", "ModelInfo", "ModelVersion", "Ref", "Registry", "parse_ref"]
