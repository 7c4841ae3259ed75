"""Prometheus metrics of one replica, served at ``/metrics``.

Each control plane has its own registry (tests run several in one process). Counters are
fed by hooks: the saga executor's end of a saga, the store's commits of events, and the
auto-restart task.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sagas = Counter(
            "skylight_sagas",
            "Sagas that reached their end, by saga and outcome (done, unwound, stuck).",
            ["saga", "outcome"],
            registry=self.registry,
        )
        self.start_failures = Counter(
            "skylight_start_failures",
            "Instance starts (user, create with start, automatic restart) that failed, by "
            "reason code.",
            ["reason", "cause"],
            registry=self.registry,
        )
        self.events = Counter(
            "skylight_events_written",
            "Instance events written (repeats folded into an earlier event count too), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "skylight_webhook_attempts",
            "Webhook delivery attempts, by result (succeeded, failed_http_error, "
            "failed_unreachable, failed_timeout).",
            ["result"],
            registry=self.registry,
        )
        self.in_the_dark = Counter(
            "skylight_instances_found_in_the_dark",
            "Instances the auditor found not where their user wants them, with no operation "
            "making progress and no status reason (each is then explained by an "
            "instance.operation_stuck event). Stays 0 in a healthy control plane.",
            ["case"],
            registry=self.registry,
        )
        self.auto_restarts = Counter(
            "skylight_auto_restart_attempts",
            "Automatic restarts begun by the control plane.",
            registry=self.registry,
        )

    def saga_ended(self, name: str, state: str, reason_code: str | None, cause: str) -> None:
        """A saga's end was committed; ``cause`` is why a start was asked for."""
        self.sagas.labels(saga=name, outcome=state).inc()
        if name == "instance-start" and state != "done":
            self.start_failures.labels(reason=reason_code or "internal", cause=cause).inc()

    def events_written(self, kinds: list[str]) -> None:
        for kind in kinds:
            self.events.labels(kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
