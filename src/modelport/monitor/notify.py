"""Notifiers: the messages an alert group becomes, in each receiver's own format.

One ``AlertGroup`` (alerts that share a cause: same rule and group labels) becomes one message:

* ``webhook`` — a generic JSON document (``{"status", "group", "alerts": [...]}``);
* ``slack`` — a Slack incoming-webhook message (``text`` plus ``blocks``);
* ``pagerduty`` — PagerDuty Events API v2, one event per alert, ``trigger`` then ``resolve``
  under the same ``dedup_key`` (the alert's fingerprint);
* ``alertmanager`` — the Prometheus Alertmanager webhook payload (``version: "4"``), so receivers
  written for Alertmanager work unchanged;
* ``email`` — a plain-text mail through SMTP.

``Notifier.send(group)`` does the I/O and raises ``NotificationError`` when the receiver did not
take the message; retries, timeouts and recording belong to the dispatcher, never to evaluation.
Receivers are configured in the rules file::

    receivers:
      - {name: ops, type: webhook, url: "https://hooks.example.com/x"}
      - {name: growth, type: slack, url: "https://hooks.slack.com/services/…"}
      - {name: pager, type: pagerduty, routing_key: "…"}
      - {name: mail, type: email, host: smtp.example.com, port: 587, sender: mp@example.com,
         to: [oncall@example.com], starttls: true}
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal

from modelport.errors import ConfigurationError, ModelportError

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


class NotificationError(ModelportError):
    """A receiver did not accept a message (network error, timeout, non-2xx answer)."""


@dataclass(frozen=True)
class Alert:
    """One alert at one moment: a rule's condition on one model (and feature)."""

    rule: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    summary: str
    value: float | None
    threshold: float | None
    starts_at: datetime
    ends_at: datetime | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Stable across evaluations (labels only): PagerDuty's dedup key, Alertmanager's id."""
        text = json.dumps(sorted(self.labels.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "status": self.status, "labels": self.labels,
            "summary": self.summary, "value": self.value, "threshold": self.threshold,
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at) if self.ends_at else None,
            "annotations": self.annotations, "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class AlertGroup:
    """Alerts that share a cause, sent as one message."""

    key: str
    labels: dict[str, str]
    alerts: tuple[Alert, ...]

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def title(self) -> str:
        firing = [a for a in self.alerts if a.status == "firing"]
        head = f"[{self.status.upper()}"
        head += f":{len(firing)}]" if firing else "]"
        name = self.labels.get("alertname", self.key)
        model = self.labels.get("model")
        return f"{head} {name}" + (f" ({model})" if model else "")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Notifier:
    """A receiver of alert groups. Subclasses implement :meth:`send`."""

    kind = "notifier"

    def __init__(self, name: str, *, timeout: float = 5.0) -> None:
        self.name = name
        self.timeout = timeout

    def send(self, group: AlertGroup) -> None:
        """Deliver one message for ``group``; raise ``NotificationError`` if it was not taken."""
        raise NotImplementedError

    def _post(self, url: str, body: Mapping[str, Any],
              headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            url, data=data, method="POST",
            headers={"content-type": "application/json", "user-agent": "modelport-monitor",
                     **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise NotificationError(
                f"{self.kind} receiver {self.name!r} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotificationError(
                f"{self.kind} receiver {self.name!r} could not be reached: {reason}") from None
        if not 200 <= status < 300:
            raise NotificationError(f"{self.kind} receiver {self.name!r} answered HTTP {status}")


class WebhookNotifier(Notifier):
    kind = "webhook"

    def __init__(self, name: str, url: str, *, headers: Mapping[str, str] | None = None,
                 timeout: float = 5.0) -> None:
        super().__init__(name, timeout=timeout)
        self.url = url
        self.headers = dict(headers or {})

    def payload(self, group: AlertGroup) -> dict[str, Any]:
        return {"receiver": self.name, "status": group.status, "group": group.key,
                "group_labels": group.labels, "title": group.title,
                "alerts": [a.to_dict() for a in group.alerts]}

    def send(self, group: AlertGroup) -> None:
        self._post(self.url, self.payload(group), self.headers)


class SlackNotifier(WebhookNotifier):
    """Slack incoming webhooks: ``text`` (notifications, fallbacks) and ``blocks`` (layout)."""

    kind = "slack"

    def payload(self, group: AlertGroup) -> dict[str, Any]:
        icon = ":red_circle:" if group.status == "firing" else ":large_green_circle:"
        lines = [f"• {a.summary} — *{a.status}*" for a in group.alerts]
        return {
            "text": f"{icon} {group.title}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": group.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": " ".join(
                    f"`{k}={v}`" for k, v in sorted(group.labels.items()))[:3000] or "-"}]},
            ],
        }


class PagerDutyNotifier(Notifier):
    """PagerDuty Events API v2: a ``trigger`` per firing alert, a ``resolve`` with its key."""

    kind = "pagerduty"
    _SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}

    def __init__(self, name: str, routing_key: str, *, url: str = PAGERDUTY_URL,
                 source: str = "modelport", timeout: float = 5.0) -> None:
        super().__init__(name, timeout=timeout)
        self.routing_key = routing_key
        self.url = url
        self.source = source

    def events(self, group: AlertGroup) -> list[dict[str, Any]]:
        out = []
        for alert in group.alerts:
            event: dict[str, Any] = {
                "routing_key": self.routing_key,
                "event_action": "trigger" if alert.status == "firing" else "resolve",
                "dedup_key": alert.fingerprint,
            }
            if alert.status == "firing":
                event["payload"] = {
                    "summary": alert.summary[:1024], "source": self.source,
                    "severity": self._SEVERITY.get(alert.severity, "warning"),
                    "timestamp": _iso(alert.starts_at), "component": alert.labels.get("model"),
                    "group": group.key, "class": alert.labels.get("metric"),
                    "custom_details": {"value": alert.value, "threshold": alert.threshold,
                                       "labels": alert.labels},
                }
            out.append(event)
        return out

    def send(self, group: AlertGroup) -> None:
        for event in self.events(group):
            self._post(self.url, event)


class AlertmanagerNotifier(WebhookNotifier):
    """The payload Prometheus Alertmanager posts to webhook receivers (version 4)."""

    kind = "alertmanager"

    def __init__(self, name: str, url: str, *, external_url: str = "",
                 headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> None:
        super().__init__(name, url, headers=headers, timeout=timeout)
        self.external_url = external_url

    def payload(self, group: AlertGroup) -> dict[str, Any]:
        common = dict(group.alerts[0].labels)
        for alert in group.alerts[1:]:
            common = {k: v for k, v in common.items() if alert.labels.get(k) == v}
        return {
            "version": "4", "groupKey": group.key, "truncatedAlerts": 0,
            "status": group.status, "receiver": self.name, "groupLabels": group.labels,
            "commonLabels": common, "commonAnnotations": {}, "externalURL": self.external_url,
            "alerts": [{
                "status": a.status, "labels": a.labels,
                "annotations": {"summary": a.summary, **a.annotations},
                "startsAt": _iso(a.starts_at),
                "endsAt": _iso(a.ends_at) if a.ends_at else "0001-01-01T00:00:00Z",
                "generatorURL": self.external_url, "fingerprint": a.fingerprint,
            } for a in group.alerts],
        }


class EmailNotifier(Notifier):
    kind = "email"

    def __init__(self, name: str, *, host: str, sender: str, to: Sequence[str], port: int = 25,
                 starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0) -> None:
        super().__init__(name, timeout=timeout)
        if not to:
            raise ConfigurationError(f"email receiver {name!r} needs at least one `to` address")
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.starttls, self.username, self.password = starttls, username, password

    def message(self, group: AlertGroup) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"modelport {group.title}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        lines = [group.title, ""]
        for alert in group.alerts:
            lines.append(f"- {alert.status}: {alert.summary}")
            lines.append(f"  since {_iso(alert.starts_at)}; labels: "
                         + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def send(self, group: AlertGroup) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self.message(group))
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationError(
                f"email receiver {self.name!r} could not send through "
                f"{self.host}:{self.port}: {exc}") from None


_KINDS: dict[str, type[Notifier]] = {
    "webhook": WebhookNotifier, "slack": SlackNotifier, "pagerduty": PagerDutyNotifier,
    "alertmanager": AlertmanagerNotifier, "email": EmailNotifier,
}


def notifier_from_dict(data: Mapping[str, Any]) -> Notifier:
    """Build a receiver from its ``receivers:`` entry (validated, with a clear message)."""
    if not isinstance(data, Mapping) or not data.get("name") or not data.get("type"):
        raise ConfigurationError("each receiver needs `name` and `type` "
                                 f"({', '.join(_KINDS)})")
    name, kind = str(data["name"]), str(data["type"])
    if kind not in _KINDS:
        raise ConfigurationError(f"receiver {name!r}: unknown type {kind!r}; known: "
                                 f"{', '.join(_KINDS)}")
    options = {k: v for k, v in data.items() if k not in ("name", "type")}
    needs = {"webhook": "url", "slack": "url", "alertmanager": "url",
             "pagerduty": "routing_key", "email": "host"}[kind]
    if not options.get(needs):
        raise ConfigurationError(f"receiver {name!r} ({kind}) needs `{needs}`")
    try:
        return _KINDS[kind](name, **options)
    except TypeError as exc:
        raise ConfigurationError(f"receiver {name!r} ({kind}): {exc}") from None


__all__ = [
    "Alert",
    "AlertGroup",
    "AlertmanagerNotifier",
    "EmailNotifier",
    "NotificationError",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "notifier_from_dict",
]
