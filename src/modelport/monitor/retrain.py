"""Retraining triggers: what an alert may start, at most once per ``min_interval``.

A trigger is a command or an HTTP POST, declared in the rules file and named by rules::

    triggers:
      - name: retrain-churn
        command: ["python", "train.py", "--model", "churn"]   # context JSON on stdin
        min_interval: 6h
        timeout: 30m
      - name: airflow
        url: "https://airflow.example.com/api/v1/dags/retrain/dagRuns"
        headers: {Authorization: "Bearer …"}

The command gets the alert's context as JSON on standard input and as environment variables
(``MODELPORT_ALERT_RULE``, ``MODELPORT_ALERT_MODEL``, ``MODELPORT_ALERT_METRIC``,
``MODELPORT_ALERT_VALUE``, ``MODELPORT_ALERT_THRESHOLD``, ``MODELPORT_ALERT_STATUS``); the URL
gets the same JSON as its body. Every run, and every run skipped by the rate limit, comes back
as a ``TriggerOutcome`` for the history.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.durations import parse_duration
from modelport.errors import ConfigurationError

_OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class TriggerOutcome:
    trigger: str
    ran: bool
    ok: bool
    at: float
    detail: str
    #: exit code of a command, HTTP status of a URL; None when it did not run or never answered
    code: int | None = None


@dataclass
class RetrainTrigger:
    name: str
    command: Sequence[str] | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    min_interval: float = 3600.0
    timeout: float = 1800.0
    last_run: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainTrigger:
        name = str(data.get("name") or "")
        if not name:
            raise ConfigurationError("each trigger needs a `name`")
        command, url = data.get("command"), data.get("url")
        if bool(command) == bool(url):
            raise ConfigurationError(f"trigger {name!r} needs exactly one of `command` "
                                     "(a list of arguments) or `url`")
        if command is not None and (isinstance(command, str) or not all(
                isinstance(a, str) for a in command)):
            raise ConfigurationError(f"trigger {name!r}: `command` must be a list of strings, "
                                     'e.g. ["python", "train.py"] (no shell is used)')
        unknown = sorted(set(data) - {"name", "command", "url", "headers", "min_interval",
                                      "timeout"})
        if unknown:
            raise ConfigurationError(f"trigger {name!r} has unknown field(s) {unknown}")
        return cls(
            name=name, command=list(command) if command else None,
            url=str(url) if url else None,
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
            min_interval=parse_duration(data.get("min_interval", "1h"),
                                        what=f"trigger {name!r}: min_interval"),
            timeout=parse_duration(data.get("timeout", "30m"),
                                   what=f"trigger {name!r}: timeout"),
        )

    def fire(self, context: Mapping[str, Any], *,
             clock: Callable[[], float] = time.time) -> TriggerOutcome:
        """Run once unless the last run was less than ``min_interval`` ago."""
        now = clock()
        if self.last_run is not None and now - self.last_run < self.min_interval:
            wait = self.min_interval - (now - self.last_run)
            return TriggerOutcome(self.name, False, True, now,
                                  f"skipped: ran {now - self.last_run:.0f} s ago; next run "
                                  f"allowed in {wait:.0f} s")
        self.last_run = now
        payload = json.dumps(context, default=str)
        if self.command:
            return self._run_command(payload, context, now)
        return self._post(payload, now)

    def _run_command(self, payload: str, context: Mapping[str, Any],
                     now: float) -> TriggerOutcome:
        assert self.command is not None
        env = {**os.environ, **{f"MODELPORT_ALERT_{k.upper()}": str(context.get(k, ""))
                                for k in ("rule", "model", "metric", "value", "threshold",
                                          "status")}}
        try:
            done = subprocess.run(list(self.command), input=payload, capture_output=True,
                                  text=True, timeout=self.timeout, env=env, check=False)
        except FileNotFoundError:
            return TriggerOutcome(self.name, True, False, now,
                                  f"command not found: {self.command[0]}")
        except subprocess.TimeoutExpired:
            return TriggerOutcome(self.name, True, False, now,
                                  f"command did not finish within {self.timeout:g} s")
        output = (done.stdout + done.stderr)[-_OUTPUT_TAIL:]
        return TriggerOutcome(self.name, True, done.returncode == 0, now,
                              output or f"exit code {done.returncode}", done.returncode)

    def _post(self, payload: str, now: float) -> TriggerOutcome:
        assert self.url is not None
        request = urllib.request.Request(
            self.url, data=payload.encode(), method="POST",
            headers={"content-type": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = int(response.status)
                body = response.read(_OUTPUT_TAIL).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return TriggerOutcome(self.name, True, False, now, f"HTTP {exc.code}", exc.code)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            return TriggerOutcome(self.name, True, False, now,
                                  f"could not reach {self.url}: {getattr(exc, 'reason', exc)}")
        return TriggerOutcome(self.name, True, 200 <= status < 300, now, body or f"HTTP {status}",
                              status)


__all__ = ["RetrainTrigger", "TriggerOutcome"]
