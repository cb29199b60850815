"""Feedback rewards checked against the declared range of the bandit endpoint they reward.

Rewards reach a bandit through the prediction log: a feedback item names a prediction, the log
records which endpoint and variant answered it, and the router reads the join
(:func:`modelport.rollout.router.logged_rewards`). Every feedback surface (``POST /feedback``,
gRPC ``Feedback``, ``modelport feedback send|load|consume``, ``modelport.feedback``) calls
:func:`check_rewards` before it stores anything, so a reward outside the range is refused with
one error naming the field(s) and the range, and nothing of the request is stored.

An item's reward is checked against endpoint ``E``'s range when

* its ``model`` names ``E`` (``POST /feedback/E``, ``--model E``), or
* its prediction was answered by ``E``. Finding that out reads the prediction log, so it is
  done only for rewards outside some bandit's range: a reward inside every bandit's range is
  valid whatever answered it, and costs no lookup.

A reward whose prediction is not in the log yet (or named by ``entity_key``) cannot be tied to
an endpoint when it arrives; the bandit ignores logged rewards outside its range when it reads
them (:func:`in_range_sql`), so such a reward never skews the arms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelport.errors import InvalidInputError, ModelportError
from modelport.registry.refs import parse_ref
from modelport.rollout.spec import Endpoint

if TYPE_CHECKING:
    from modelport.settings import Settings

log = logging.getLogger("modelport.rollout")

#: bandit endpoint name -> (reward_min, reward_max)
Ranges = Mapping[str, tuple[float, float]]
#: prediction ids -> the endpoint that answered each (ids not found are left out)
EndpointOf = Callable[[Sequence[str]], Mapping[str, str]]
#: item index -> how the surface names that item's reward field (``items[3].reward``)
FieldOf = Callable[[int], str]


class RewardItem(Protocol):
    @property
    def prediction_id(self) -> str | None: ...
    @property
    def reward(self) -> float | None: ...
    @property
    def model(self) -> str | None: ...


def bandit_ranges(endpoints: Iterable[Endpoint]) -> dict[str, tuple[float, float]]:
    """The declared reward range of every bandit endpoint among ``endpoints``."""
    return {e.name: (e.spec.bandit.reward_min, e.spec.bandit.reward_max)
            for e in endpoints if e.spec.policy == "bandit"}


def item_field(single: bool) -> FieldOf:
    """How ``parse_items`` names fields: ``reward`` for one object, ``items[i].reward``."""
    return (lambda i: "reward") if single else (lambda i: f"items[{i}].reward")


def out_of_range(items: Sequence[RewardItem], ranges: Ranges,
                 endpoint_of: EndpointOf | None = None,
                 field_of: FieldOf = lambda i: f"items[{i}].reward",
                 ) -> list[tuple[int, str, str, str]]:
    """``(index, field, endpoint, reason)`` for each item whose reward lies outside the range of the
    bandit endpoint it rewards (pure apart from ``endpoint_of``)."""
    if not ranges:
        return []
    bad: list[tuple[int, str, str, str]] = []
    lookup: list[int] = []
    for i, item in enumerate(items):
        reward = item.reward
        if reward is None:
            continue
        if item.model is not None and item.model in ranges:
            low, high = ranges[item.model]
            if not low <= reward <= high:
                bad.append((i, field_of(i), item.model,
                            _reason(field_of(i), reward, item.model, low, high)))
            continue
        if item.prediction_id is not None and not all(
                low <= reward <= high for low, high in ranges.values()):
            lookup.append(i)
    if lookup and endpoint_of is not None:
        ids = sorted({str(items[i].prediction_id) for i in lookup})
        answered = endpoint_of(ids)
        for i in lookup:
            name = answered.get(str(items[i].prediction_id))
            reward = items[i].reward
            if name is None or name not in ranges or reward is None:
                continue
            low, high = ranges[name]
            if not low <= reward <= high:
                bad.append((i, field_of(i), name, _reason(field_of(i), reward, name, low, high,
                                                          items[i].prediction_id)))
    bad.sort()
    return bad


def check_rewards(items: Sequence[RewardItem], ranges: Ranges,
                  endpoint_of: EndpointOf | None = None,
                  field_of: FieldOf = lambda i: f"items[{i}].reward", *,
                  fix: str = "") -> None:
    """Raise ``InvalidInputError`` naming every out-of-range reward (see :func:`out_of_range`)."""
    bad = out_of_range(items, ranges, endpoint_of, field_of)
    if not bad:
        return
    shown = "; ".join(reason for *_, reason in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    name = bad[0][2]
    raise InvalidInputError(
        f"{shown}{more}; nothing was stored; send rewards in the declared range, or change "
        f"it with 'modelport endpoint set {name} --reward-range LOW,HIGH'{fix}",
        field=bad[0][1])


def _reason(field: str, reward: float, endpoint: str, low: float, high: float,
            prediction_id: str | None = None) -> str:
    whose = f" (prediction {prediction_id})" if prediction_id else ""
    return (f"{field} {reward:g}{whose} is outside the reward range [{low:g}, {high:g}] of "
            f"bandit endpoint '{endpoint}'")


def in_range_sql(column: str, low: float, high: float) -> str:
    """A SQL condition keeping rewards inside ``[low, high]`` (for reading logged rewards)."""
    return f"{column} BETWEEN {float(low)!r} AND {float(high)!r}"


def log_endpoint_of(endpoints: Iterable[Endpoint], *, store: Any = None,
                    before: Callable[[], Any] | None = None) -> EndpointOf:
    """Look prediction ids up in the prediction log (``store``; default the configured one):
    which of ``endpoints`` answered each. ``before`` runs first (a server flushes its pending
    predictions, so feedback sent right after a prediction finds it)."""
    bandits = [e for e in endpoints if e.spec.policy == "bandit"]

    def endpoint_of(ids: Sequence[str]) -> Mapping[str, str]:
        if not ids or not bandits:
            return {}
        if before is not None:
            before()
        import modelport.log as ml

        models = sorted({parse_ref(ref).name for e in bandits for ref in e.spec.variants.values()})
        names = ", ".join(_quote(e.name) for e in bandits)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 1000):
            wanted = ", ".join(_quote(i) for i in ids[start:start + 1000])
            sql = (f"SELECT DISTINCT prediction_id, endpoint FROM predictions WHERE "
                   f"prediction_id IN ({wanted}) AND endpoint IN ({names})")
            for model in models:
                try:
                    table = ml.query(sql, model=model, store=store)
                except (ModelportError, ImportError) as exc:  # nothing logged for it yet
                    log.debug("looking up predictions of %s failed: %s", model, exc)
                    continue
                for row in table.to_pylist():
                    found[row["prediction_id"]] = row["endpoint"]
        return found

    return endpoint_of


def registry_guard(settings: Settings | None = None, *, store: Any = None, fix: str = ""
                   ) -> Callable[[Sequence[RewardItem], FieldOf], None] | None:
    """``check(items, field_of)`` over the bandit endpoints of the configured registry, for
    surfaces without a server (CLI, Python API); ``None`` when there is no registry or no
    bandit endpoint (nothing to check; no registry file is created)."""
    from modelport.registry import Registry
    from modelport.rollout.store import EndpointStore
    from modelport.settings import Settings

    settings = settings or Settings.from_env()
    if _missing_sqlite(settings.registry_url):
        return None
    with Registry.from_settings(settings) as registry:
        endpoints = EndpointStore(registry).list()
    ranges = bandit_ranges(endpoints)
    if not ranges:
        return None
    lookup = log_endpoint_of(endpoints, store=store)

    def check(items: Sequence[RewardItem], field_of: FieldOf) -> None:
        check_rewards(items, ranges, lookup, field_of, fix=fix)

    return check


def _missing_sqlite(url: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(str(parsed.database)).expanduser().exists()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


__all__ = ["EndpointOf", "Ranges", "bandit_ranges", "check_rewards", "in_range_sql",
           "item_field", "log_endpoint_of", "out_of_range", "registry_guard"]
