"""What an endpoint is: its declared traffic policy (``EndpointSpec``) and the state that the
rollout moves along (``EndpointState``), as plain frozen values with a dict / YAML form.

>>> spec = EndpointSpec.from_dict({"name": "fraud", "policy": "split",
...     "variants": {"a": "fraud:1", "b": "fraud:2"}, "weights": {"a": 90, "b": 10}})
>>> spec.weights
{'a': 90.0, 'b': 10.0}
>>> EndpointSpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from modelport.errors import ConfigurationError
from modelport.registry.refs import parse_ref

PolicyKind = Literal["single", "bluegreen", "canary", "shadow", "split", "bandit"]
POLICIES: tuple[str, ...] = get_args(PolicyKind)
BanditAlgorithm = Literal["thompson", "ucb1", "epsilon_greedy"]
ALGORITHMS: tuple[str, ...] = get_args(BanditAlgorithm)
Status = Literal["running", "promoted", "rolled_back"]
#: header (REST, gRPC metadata) that carries the routing key when the spec names none
DEFAULT_KEY = "x-modelport-key"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
_VARIANT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_FIX = "fix it with 'modelport endpoint set' or 'modelport endpoint create'"


def check_endpoint_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"invalid endpoint name {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter")
    return name


@dataclass(frozen=True)
class CanaryConfig:
    """How a canary moves: ``steps`` (candidate share in percent) advance every ``interval_s``
    while every analysis check passes; ``max_failed_checks`` failed checks roll it back. A check
    with fewer than ``min_requests`` candidate requests counts as failed (as Flagger does)."""

    steps: tuple[float, ...] = (5.0, 10.0, 25.0, 50.0, 100.0)
    interval_s: float = 60.0
    max_error_rate: float | None = 0.01
    max_p99_ms: float | None = None
    min_quality: float | None = None
    quality_metric: str | None = None
    min_requests: int = 20
    max_failed_checks: int = 2
    promote: bool = True

    def check(self) -> None:
        if not self.steps:
            raise ConfigurationError(f"a canary needs at least one step (--steps 5,25,100); {_FIX}")
        last = 0.0
        for step in self.steps:
            if not (0 < step <= 100) or step <= last:
                raise ConfigurationError(
                    f"canary steps must rise strictly within (0, 100], not {list(self.steps)}; "
                    f"{_FIX}")
            last = step
        if not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise ConfigurationError(f"the canary interval must be positive; {_FIX}")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise ConfigurationError(f"--max-error-rate is a fraction in [0, 1]; {_FIX}")
        if self.max_p99_ms is not None and self.max_p99_ms <= 0:
            raise ConfigurationError(f"--max-p99-ms must be positive; {_FIX}")
        if self.min_requests < 0 or self.max_failed_checks < 1:
            raise ConfigurationError(
                f"--min-requests must be >= 0 and --max-failed-checks >= 1; {_FIX}")
        if self.min_quality is not None and not self.quality_metric:
            raise ConfigurationError(
                "--min-quality needs --quality-metric (a feedback metric such as accuracy); "
                f"{_FIX}")


@dataclass(frozen=True)
class BanditConfig:
    """A multi-armed bandit over the variants: rewards (from feedback) lie in
    ``[reward_min, reward_max]``; every arm keeps at least ``floor`` of the traffic."""

    algorithm: BanditAlgorithm = "thompson"
    floor: float = 0.05
    epsilon: float = 0.1
    reward_min: float = 0.0
    reward_max: float = 1.0

    def check(self, arms: int) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigurationError(
                f"unknown bandit algorithm {self.algorithm!r}; use one of {', '.join(ALGORITHMS)}")
        if not self.floor >= 0 or self.floor * arms > 1:
            raise ConfigurationError(
                f"the floor share {self.floor:g} times {arms} arms exceeds the whole traffic; "
                f"use a floor of at most {1 / arms:.3g}; {_FIX}")
        if not 0 <= self.epsilon <= 1:
            raise ConfigurationError(f"epsilon is a probability in [0, 1]; {_FIX}")
        if not self.reward_max > self.reward_min:
            raise ConfigurationError(f"reward range must have reward_max > reward_min; {_FIX}")


@dataclass(frozen=True)
class EndpointSpec:
    """The declared policy of one endpoint (what users write in YAML or on the command line).

    ``variants`` maps a variant name (``blue``) to a model reference (``fraud@production``,
    ``fraud:7``). Which fields matter depends on ``policy``:

    * ``single``: the first variant; ``bluegreen``: ``primary`` is the initial colour;
    * ``canary``: ``primary`` (the stable variant), ``candidate`` and ``canary``;
    * ``shadow``: ``primary`` answers, ``shadows`` get copies (any policy may list shadows);
    * ``split``: ``weights`` in percent, summing to 100, sticky by ``key``;
    * ``bandit``: ``bandit`` (algorithm, floor share, reward range).

    ``key`` names where the routing key comes from: a header / gRPC metadata key over the
    network, a column in batch jobs (default: the ``x-modelport-key`` header, the message key).
    ``experiment`` salts the sticky hash (default: the endpoint name).
    """

    name: str
    policy: PolicyKind
    variants: dict[str, str] = field(hash=False)
    primary: str | None = None
    candidate: str | None = None
    weights: dict[str, float] = field(default_factory=dict, hash=False)
    shadows: tuple[str, ...] = ()
    key: str | None = None
    experiment: str | None = None
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    bandit: BanditConfig = field(default_factory=BanditConfig)
    description: str = ""

    @property
    def salt(self) -> str:
        return self.experiment or self.name

    @property
    def stable(self) -> str:
        """The variant that answers when nothing else applies."""
        return self.primary or next(iter(self.variants))

    def check(self) -> EndpointSpec:
        """Validate; raise ``ConfigurationError`` naming what to fix. Returns ``self``."""
        check_endpoint_name(self.name)
        if self.policy not in POLICIES:
            raise ConfigurationError(
                f"unknown policy {self.policy!r}; use one of {', '.join(POLICIES)}")
        if not self.variants:
            raise ConfigurationError(
                f"endpoint {self.name!r} has no variants; add one with --variant NAME=MODEL_REF")
        for variant, ref in self.variants.items():
            if not isinstance(variant, str) or not _VARIANT.fullmatch(variant):
                raise ConfigurationError(
                    f"invalid variant name {variant!r}: use letters, digits, '_' or '-', starting "
                    "with a letter")
            try:
                parse_ref(ref)
            except Exception as exc:
                raise ConfigurationError(f"variant {variant!r}: {exc}") from None

        def known(name: str | None, what: str) -> None:
            if name is not None and name not in self.variants:
                raise ConfigurationError(
                    f"{what} {name!r} is not a variant of endpoint {self.name!r} (variants: "
                    f"{', '.join(self.variants)}); {_FIX}")

        known(self.primary, "primary")
        known(self.candidate, "candidate")
        for shadow in self.shadows:
            known(shadow, "shadow")
        for variant in self.weights:
            known(variant, "weight for")
        if self.primary is not None and self.primary in self.shadows:
            raise ConfigurationError(f"variant {self.primary!r} cannot both answer and shadow")
        if self.policy == "single" and len(self.variants) - len(self.shadows) != 1:
            raise ConfigurationError(
                f"a single-variant endpoint answers from exactly one variant; {_FIX}")
        if self.policy in ("bluegreen", "canary") and len(self.variants) < 2:
            raise ConfigurationError(
                f"a {self.policy} endpoint needs two variants (--variant blue=REF --variant "
                f"green=REF); {_FIX}")
        if self.policy == "canary":
            if self.candidate is None:
                raise ConfigurationError(f"a canary needs --candidate VARIANT; {_FIX}")
            if self.candidate == self.stable:
                raise ConfigurationError("the canary candidate must differ from the primary")
            self.canary.check()
        if self.policy == "shadow" and not self.shadows:
            raise ConfigurationError(f"a shadow endpoint needs --shadow VARIANT; {_FIX}")
        if self.policy == "split":
            if not self.weights:
                raise ConfigurationError(
                    f"a split needs --weight VARIANT=PERCENT for its variants; {_FIX}")
            if any(w < 0 or not math.isfinite(w) for w in self.weights.values()):
                raise ConfigurationError(f"weights must be non-negative percentages; {_FIX}")
            total = sum(self.weights.values())
            if abs(total - 100.0) > 1e-6:
                raise ConfigurationError(
                    f"weights of endpoint {self.name!r} sum to {total:g}, not 100; {_FIX}")
        if self.policy == "bandit":
            arms = [v for v in self.variants if v not in self.shadows]
            if len(arms) < 2:
                raise ConfigurationError(f"a bandit needs at least two arms; {_FIX}")
            self.bandit.check(len(arms))
        return self

    def answering(self) -> list[str]:
        """Variants that may answer clients (all but shadows)."""
        return [v for v in self.variants if v not in self.shadows]

    # ------------------------------------------------------------------ dict form
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "policy": self.policy,
                               "variants": dict(self.variants)}
        if self.primary is not None:
            out["primary"] = self.primary
        if self.candidate is not None:
            out["candidate"] = self.candidate
        if self.weights:
            out["weights"] = dict(self.weights)
        if self.shadows:
            out["shadows"] = list(self.shadows)
        if self.key is not None:
            out["key"] = self.key
        if self.experiment is not None:
            out["experiment"] = self.experiment
        if self.policy == "canary":
            c = self.canary
            out["canary"] = {"steps": list(c.steps), "interval_s": c.interval_s,
                             "max_error_rate": c.max_error_rate, "max_p99_ms": c.max_p99_ms,
                             "min_quality": c.min_quality, "quality_metric": c.quality_metric,
                             "min_requests": c.min_requests,
                             "max_failed_checks": c.max_failed_checks, "promote": c.promote}
        if self.policy == "bandit":
            b = self.bandit
            out["bandit"] = {"algorithm": b.algorithm, "floor": b.floor, "epsilon": b.epsilon,
                             "reward_min": b.reward_min, "reward_max": b.reward_max}
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointSpec:
        """Build and validate a spec from its dict (YAML) form; unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise ConfigurationError("an endpoint is a mapping with name, policy and variants")
        allowed = {"name", "policy", "variants", "primary", "candidate", "weights", "shadows",
                   "key", "experiment", "canary", "bandit", "description"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigurationError(
                f"unknown endpoint field(s) {sorted(unknown)}; known: {', '.join(sorted(allowed))}")
        try:
            variants = {str(k): str(v) for k, v in dict(data.get("variants") or {}).items()}
            weights = {str(k): float(v) for k, v in dict(data.get("weights") or {}).items()}
            canary = CanaryConfig(**_typed(data.get("canary"), CanaryConfig))
            bandit = BanditConfig(**_typed(data.get("bandit"), BanditConfig))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"endpoint {data.get('name')!r}: {exc}") from None
        shadows = data.get("shadows") or ()
        if isinstance(shadows, str):
            shadows = (shadows,)
        spec = cls(
            name=str(data.get("name", "")), policy=cast(PolicyKind, data.get("policy", "single")),
            variants=variants, primary=_opt(data.get("primary")),
            candidate=_opt(data.get("candidate")), weights=weights,
            shadows=tuple(str(s) for s in shadows), key=_opt(data.get("key")),
            experiment=_opt(data.get("experiment")), canary=canary, bandit=bandit,
            description=str(data.get("description") or ""))
        return spec.check()


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _typed(value: Any, kind: type[Any]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{kind.__name__} must be a mapping")
    known = set(kind.__dataclass_fields__)
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"unknown {kind.__name__} field(s) {sorted(unknown)}")
    out = dict(value)
    if "steps" in out:
        out["steps"] = tuple(float(s) for s in out["steps"])
    for name in ("interval_s", "floor", "epsilon", "reward_min", "reward_max"):
        if out.get(name) is not None:
            out[name] = float(out[name])
    for name in ("min_requests", "max_failed_checks"):
        if out.get(name) is not None:
            out[name] = int(out[name])
    return out


@dataclass(frozen=True)
class EndpointState:
    """What the rollout has done so far; changed by commands and the canary controller.

    ``active`` is the answering colour of a blue/green endpoint (``previous`` the one a
    ``rollback`` returns to); ``step`` / ``weight`` / ``failed_checks`` / ``checked_at`` track a
    canary; ``status`` ends ``promoted`` or ``rolled_back``; ``paused`` stops automatic changes.
    ``awaiting_traffic``: a new canary whose candidate has not answered yet; its first check
    window starts when the candidate's traffic does (``rollout.canary.analyse``).
    """

    active: str | None = None
    previous: str | None = None
    step: int = 0
    weight: float = 0.0
    failed_checks: int = 0
    checked_at: float = 0.0
    status: Status = "running"
    paused: bool = False
    reason: str = ""
    awaiting_traffic: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"active": self.active, "previous": self.previous, "step": self.step,
                "weight": self.weight, "failed_checks": self.failed_checks,
                "checked_at": self.checked_at, "status": self.status, "paused": self.paused,
                "reason": self.reason, "awaiting_traffic": self.awaiting_traffic}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EndpointState:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: Any) -> EndpointState:
        return replace(self, **changes)


def initial_state(spec: EndpointSpec, now: float) -> EndpointState:
    """The state a new (or re-created) endpoint starts in."""
    if spec.policy == "canary":
        return EndpointState(step=0, weight=spec.canary.steps[0], checked_at=now,
                             awaiting_traffic=True)
    if spec.policy == "bluegreen":
        return EndpointState(active=spec.stable)
    return EndpointState()


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as stored: spec, state and the revision that optimistic updates check."""

    spec: EndpointSpec
    state: EndpointState
    revision: int = 1
    updated_at: float = 0.0
    updated_by: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "state": self.state.to_dict(), "revision": self.revision,
                "updated_at": self.updated_at, "updated_by": self.updated_by}


__all__ = [
    "ALGORITHMS",
    "DEFAULT_KEY",
    "POLICIES",
    "BanditConfig",
    "CanaryConfig",
    "Endpoint",
    "EndpointSpec",
    "EndpointState",
    "PolicyKind",
    "check_endpoint_name",
    "initial_state",
]
