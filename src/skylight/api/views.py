"""Rows of the store as API views. The only place that decides what a user may see."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from skylight.api import models
from skylight.api.metadata import identity, times
from skylight.clock import as_utc
from skylight.events.reasons import redact
from skylight.instances import story
from skylight.instances.state import run_state
from skylight.operations import sleds
from skylight.store import Row as Row  # what the views render, for the routes to name
from skylight.webhooks.receivers import Receiver
from skylight.wire import JsonObject


def project(row: Row) -> models.Project:
    return models.Project(**identity(row))


_REASON_FIELDS = ("code", "message", "transient", "diagnosis", "internal")


def instance(row: Row, *, operator: bool = False, cooldown: float = 300.0) -> models.Instance:
    status = None
    if row.status_reason is not None and row.status_event_id is not None:
        shown = redact(row.status_reason, operator=operator) or {}
        told = story.of(row, shown)
        auto = None
        if told.auto_restart is not None:
            auto = models.AutoRestartProgress(**asdict(told.auto_restart))
        status = models.StatusReason(
            **{k: v for k, v in shown.items() if k in _REASON_FIELDS},
            action=told.action,
            event_id=row.status_event_id,
            time=as_utc(row.status_time),
            since=told.since,
            happened=told.happened,
            doing=told.doing,
            auto_restart=auto,
        )
    state = run_state(row.state, row.vmm_state, row.intended_state)
    expiration = None
    if row.time_last_auto_restarted is not None:
        expiration = as_utc(row.time_last_auto_restarted) + timedelta(seconds=cooldown)
    return models.Instance(
        **identity(row),
        hostname=row.hostname,
        project_id=row.project_id,
        ncpus=row.ncpus,
        memory=row.memory,
        run_state=state,  # type: ignore[arg-type]
        time_run_state_updated=as_utc(row.time_run_state_updated),
        auto_restart_enabled=row.auto_restart_policy != "never",
        auto_restart_policy=row.auto_restart_policy,
        auto_restart_cooldown_expiration=expiration,
        time_last_auto_restarted=(
            as_utc(row.time_last_auto_restarted) if row.time_last_auto_restarted else None
        ),
        boot_disk_id=row.boot_disk_id,
        cpu_platform=row.cpu_platform,
        enable_jumbo_frames=row.enable_jumbo_frames,
        intended_state=row.intended_state,
        status_reason=status,
    )


def event(row: Row, *, operator: bool = False) -> models.InstanceEvent:
    return models.InstanceEvent(
        id=row.id,
        instance_id=row.instance_id,
        project_id=row.project_id,
        time=as_utc(row.time),
        time_last=as_utc(row.time_last),
        count=row._mapping["count"],  # (row.count is the tuple method)
        kind=row.kind,
        severity=row.severity,
        actor=row.actor,
        operation_id=row.operation_id,
        run_state=row.run_state,
        reason=redact(row.reason, operator=operator),
        detail=_detail(row.detail, operator=operator),
    )


def _detail(detail: Any, *, operator: bool) -> Any:
    """An event's detail; its ``internal`` part (replica ids and such) is for operators."""
    if operator or not isinstance(detail, dict) or "internal" not in detail:
        return detail
    return {k: v for k, v in detail.items() if k != "internal"}


def sled(s: sleds.Sled) -> models.Sled:
    row, used = s.row, s.used
    policy: JsonObject = {"kind": row.policy}
    if row.policy == "in_service":
        policy["provision_policy"] = row.provision_policy
    return models.Sled(
        id=row.id,
        baseboard=models.Baseboard(part=row.part, revision=row.revision, serial=row.serial),
        policy=policy,
        rack_id=row.rack_id,
        slot=row.slot,
        state=row.state,
        **times(row),
        usable_hardware_threads=row.usable_hardware_threads,
        usable_physical_ram=row.usable_physical_ram,
        cpu_family=row.cpu_family,
        local_storage=row.local_storage,
        reserved_hardware_threads=used.reserved_cpus if used else 0,
        reserved_memory=used.reserved_memory if used else 0,
        reserved_local_storage=used.reserved_local_storage if used else 0,
    )


def sled_instance(s: sleds.SledInstance) -> models.SledInstance:
    row = s.row
    return models.SledInstance(
        id=row.id,
        active_sled_id=row.sled_id,
        memory=row.memory,
        name=row.name,
        ncpus=row.ncpus,
        project_name=s.project_name,
        silo_name="default",
        state=run_state(row.state, row.vmm_state, row.intended_state),  # type: ignore[arg-type]
        **times(row),
    )


def affinity_group(row: Row) -> models.AffinityGroup:
    return models.AffinityGroup(
        **identity(row),
        policy=row.policy,
        failure_domain=row.failure_domain,
        project_id=row.project_id,
    )


def anti_affinity_group(row: Row) -> models.AntiAffinityGroup:
    return models.AntiAffinityGroup(**affinity_group(row).model_dump())


def affinity_group_member(row: Row) -> models.AffinityGroupMember:
    """``row``: a member row of ``store.groups`` (the instance's id, name and states)."""
    value = models.InstanceMember(
        id=row.id,
        name=row.name,
        run_state=run_state(row.state, row.vmm_state, row.intended_state),  # type: ignore[arg-type]
    )
    return models.AffinityGroupMember(type="instance", value=value)


def anti_affinity_group_member(row: Row) -> models.AntiAffinityGroupMember:
    return models.AntiAffinityGroupMember(**affinity_group_member(row).model_dump())


def disk(row: Row) -> models.Disk:
    state: JsonObject = {"state": row.state}
    if row.state == "attached":
        state["instance"] = row.instance_id
    return models.Disk(
        **identity(row),
        project_id=row.project_id,
        block_size=row.block_size,
        device_path=f"/mnt/{row.name}",
        disk_type=row.disk_type,
        size=row.size,
        state=state,  # type: ignore[arg-type]
    )


def webhook_secret(row: Row) -> models.WebhookSecret:
    return models.WebhookSecret(id=row.id, time_created=as_utc(row.time_created))


def webhook_receiver(rx: Receiver) -> models.WebhookReceiver:
    row = rx.row
    return models.WebhookReceiver(
        **identity(row),
        subscriptions=rx.subscriptions,
        endpoint=row.endpoint,
        secrets=[webhook_secret(s) for s in rx.secrets],
    )


def alert_receiver(rx: Receiver) -> models.AlertReceiver:
    shown = webhook_receiver(rx)
    return models.AlertReceiver(
        **shown.model_dump(exclude={"endpoint", "secrets"}),
        kind=models.WebhookReceiverConfig(endpoint=shown.endpoint, secrets=shown.secrets),
    )


def alert_delivery(row: Row) -> models.AlertDelivery:
    return models.AlertDelivery(
        id=row.id,
        receiver_id=row.receiver_id,
        alert_class=row.alert_class,
        alert_id=row.alert_id,
        state=row.state,
        trigger=row.trigger,
        attempts=models.AlertDeliveryAttempts(webhook=row.attempts),
        time_started=as_utc(row.time_started),
    )
