"""The monitor's configuration: one YAML document of rules, receivers, triggers and silences.

::

    group_by: [alertname, model]      # alerts sharing these labels make one message
    repeat_interval: 4h               # a group still firing is sent again after this
    receivers: [...]                  # see modelport.monitor.notify
    triggers: [...]                   # see modelport.monitor.retrain
    silences:
      - {matchers: {model: churn}, until: "2026-12-05T08:00:00Z", comment: "retraining"}
    rules: [...]                      # see modelport.monitor.rules

``MonitorConfig.from_document`` validates everything at once and names what is wrong, so a
broken file is refused by ``modelport monitor apply`` before it replaces the running one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelport.errors import ConfigurationError
from modelport.monitor.dispatch import Silence
from modelport.monitor.notify import Notifier, notifier_from_dict
from modelport.monitor.retrain import RetrainTrigger
from modelport.monitor.rules import Rule, load_rules, parse_duration

_KEYS = {"group_by", "repeat_interval", "receivers", "triggers", "silences", "rules"}


@dataclass
class MonitorConfig:
    rules: list[Rule]
    receivers: dict[str, Notifier] = field(default_factory=dict)
    triggers: dict[str, RetrainTrigger] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)
    group_by: tuple[str, ...] = ("alertname", "model")
    repeat_interval: float = 4 * 3600.0

    @classmethod
    def from_document(cls, document: Any) -> MonitorConfig:
        if not isinstance(document, Mapping):
            raise ConfigurationError("the monitor file must be a YAML mapping with `rules:`")
        unknown = sorted(set(document) - _KEYS)
        if unknown:
            raise ConfigurationError(f"unknown top-level key(s) {unknown}; known: "
                                     f"{sorted(_KEYS)}")
        rules = load_rules(document)
        receivers = _named(document.get("receivers"), "receivers", notifier_from_dict)
        triggers = _named(document.get("triggers"), "triggers", RetrainTrigger.from_dict)
        for rule in rules:
            missing = [n for n in rule.notify if n not in receivers]
            if missing:
                raise ConfigurationError(
                    f"rule {rule.name!r} notifies {missing}, which are not under `receivers:`")
            if rule.retrain and rule.retrain not in triggers:
                raise ConfigurationError(
                    f"rule {rule.name!r} names trigger {rule.retrain!r}, which is not under "
                    "`triggers:`")
        group_by = document.get("group_by", ["alertname", "model"])
        if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
            raise ConfigurationError("group_by must be a list of label names")
        return cls(
            rules=rules, receivers=receivers, triggers=triggers,
            silences=[_silence(s) for s in document.get("silences") or []],
            group_by=tuple(group_by),
            repeat_interval=parse_duration(document.get("repeat_interval", "4h"),
                                           what="repeat_interval"),
        )


def _named(items: Any, what: str, build: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ConfigurationError(f"`{what}:` must be a list")
    out: dict[str, Any] = {}
    for item in items:
        built = build(item)
        if built.name in out:
            raise ConfigurationError(f"{what[:-1]} name {built.name!r} appears twice")
        out[built.name] = built
    return out


def _silence(data: Any) -> Silence:
    if not isinstance(data, Mapping) or not isinstance(data.get("matchers"), Mapping) \
            or not data.get("until"):
        raise ConfigurationError("each silence needs `matchers` (labels) and `until` "
                                 "(an ISO time such as 2026-12-05T08:00:00Z)")
    try:
        until = datetime.fromisoformat(str(data["until"]).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"silence `until` {data['until']!r} is not an ISO time such as "
            "2026-12-05T08:00:00Z") from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return Silence({str(k): str(v) for k, v in data["matchers"].items()}, until.timestamp(),
                   str(data.get("comment", "")))


__all__ = ["MonitorConfig"]
