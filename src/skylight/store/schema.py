"""The store's tables (SQLAlchemy Core). Migrations in ``migrations/`` are generated from this.

Run state is kept the way the model control plane keeps it: an instance row with a coarse
``state`` and an ``active_vmm_id``, and a VMM row with the fine-grained state, so that what the
sled reports and what the control plane decided are two separate writes.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = sa.String(36)
Time = sa.DateTime(timezone=True)
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _key() -> sa.Column[object]:
    """The row's id, its primary key (a UUID as text)."""
    return sa.Column("id", Id, primary_key=True)


def _named() -> list[sa.Column[object]]:
    """A resource's name and description, as the Oxide API shows them (the API checks the
    name; its rule allows at most 63 characters)."""
    return [
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    ]


def _in_project() -> sa.Column[object]:
    """The project a resource belongs to."""
    return sa.Column("project_id", Id, sa.ForeignKey("project.id"), nullable=False)


def _created() -> sa.Column[object]:
    """When the row was written."""
    return sa.Column("time_created", Time, nullable=False)


def _lifetime(*, soft_deleted: bool = True) -> list[sa.Column[object]]:
    """A resource's life as the Oxide API shows it. A ``soft_deleted`` row stays when it is
    deleted, marked by ``time_deleted``; others go (or, as sleds, are never deleted)."""
    columns: list[sa.Column[object]] = [
        _created(),
        sa.Column("time_modified", Time, nullable=False),
    ]
    if soft_deleted:
        columns.append(sa.Column("time_deleted", Time))
    return columns


def _unique_live_name(table: sa.Table, *scope: sa.Column[object]) -> None:
    """Names are unique among the live rows of a collection (a deleted name is free)."""
    sa.Index(
        f"uq_{table.name}_live_name",
        *scope,
        table.c.name,
        unique=True,
        sqlite_where=table.c.time_deleted.is_(None),
        postgresql_where=table.c.time_deleted.is_(None),
    )


silo = sa.Table(
    "silo",
    metadata,
    _key(),
    *_named(),
    sa.Column("discoverable", sa.Boolean, nullable=False),
    sa.Column("identity_mode", sa.String(16), nullable=False),  # local_only
    # Quotas on what the silo's running instances may hold (Oxide's SiloQuotas).
    sa.Column("quota_cpus", BigInt, nullable=False),
    sa.Column("quota_memory", BigInt, nullable=False),
    sa.Column("quota_storage", BigInt, nullable=False),
    *_lifetime(),
)
_unique_live_name(silo)

silo_user = sa.Table(
    "silo_user",
    metadata,
    _key(),
    sa.Column("silo_id", Id, sa.ForeignKey("silo.id"), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),  # the username (Oxide's external_id)
    sa.Column("password_hash", sa.String(256)),  # argon2id; NULL: login disallowed
    *_lifetime(),
)
_unique_live_name(silo_user, silo_user.c.silo_id)

# Who holds which role where: resource_type fleet | silo | project.
role_assignment = sa.Table(
    "role_assignment",
    metadata,
    sa.Column("resource_type", sa.String(16), primary_key=True),
    sa.Column("resource_id", Id, primary_key=True),
    sa.Column("identity_id", Id, primary_key=True, index=True),
    sa.Column("role_name", sa.String(32), primary_key=True),
)


def _credential() -> list[sa.Column[object]]:
    """What console sessions and device access tokens share: each is a user's, and is stored
    as the SHA-256 of its token (looked up by it)."""
    return [
        _key(),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", Id, sa.ForeignKey("silo_user.id"), nullable=False, index=True),
    ]


console_session = sa.Table(
    "console_session",
    metadata,
    *_credential(),
    _created(),
    sa.Column("time_last_used", Time, nullable=False),
)

device_access_token = sa.Table(
    "device_access_token",
    metadata,
    *_credential(),
    sa.Column("client_id", Id, nullable=False),
    _created(),
    sa.Column("time_expires", Time),
)

# A device flow under way: the CLI polls with its device code until a logged-in person
# confirms the user code (user_id set), then trades it for a token once.
device_auth_request = sa.Table(
    "device_auth_request",
    metadata,
    sa.Column("user_code", sa.String(16), primary_key=True),
    sa.Column("device_code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("client_id", Id, nullable=False),
    sa.Column("token_ttl", sa.Integer),
    sa.Column("user_id", Id),
    _created(),
    sa.Column("time_expires", Time, nullable=False),
)

# Every mutating request and every login attempt: who, what, when, and how it ended.
audit_log = sa.Table(
    "audit_log",
    metadata,
    _key(),
    sa.Column("time_started", Time, nullable=False),
    sa.Column("time_completed", Time, nullable=False),
    sa.Column("request_id", Id, nullable=False),
    sa.Column("request_uri", sa.String(512), nullable=False),
    sa.Column("operation_id", sa.String(128), nullable=False),
    sa.Column("source_ip", sa.String(64), nullable=False),
    sa.Column("user_agent", sa.String(256)),
    sa.Column("actor_silo_id", Id),  # NULL: unauthenticated
    sa.Column("actor_user_id", Id),
    sa.Column("auth_method", sa.String(16)),  # session | access_token
    sa.Column("credential_id", Id),
    sa.Column("http_status_code", sa.Integer, nullable=False),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Index("ix_audit_log_time_completed", "time_completed", "id"),
)

project = sa.Table(
    "project",
    metadata,
    _key(),
    sa.Column("silo_id", Id, sa.ForeignKey("silo.id"), nullable=False, index=True),
    *_named(),
    *_lifetime(),
)
_unique_live_name(project, project.c.silo_id)

sled = sa.Table(
    "sled",
    metadata,
    _key(),
    sa.Column("rack_id", Id, nullable=False),
    sa.Column("serial", sa.String(128), nullable=False, unique=True),
    sa.Column("part", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("slot", sa.Integer),
    sa.Column("usable_hardware_threads", sa.Integer, nullable=False),
    sa.Column("usable_physical_ram", sa.BigInteger, nullable=False),
    sa.Column("local_storage", sa.BigInteger, nullable=False),
    sa.Column("cpu_family", sa.String(64), nullable=False),
    sa.Column("policy", sa.String(16), nullable=False),  # in_service | expunged
    sa.Column("provision_policy", sa.String(24), nullable=False),  # provisionable | non_...
    sa.Column("state", sa.String(16), nullable=False),  # active | decommissioned
    sa.Column("agent_url", sa.Text),  # null: the in-process simulated rack
    # Since when the sled-health task has found the sled's agent not answering (null: it
    # answers). Placement keeps new instances off the sled until it answers again.
    sa.Column("time_unreachable", Time),
    # What is reserved on the sled now: the sums of its ``sled_reservation`` rows, and for
    # local storage also its pinned, undeleted local disks. Kept by database triggers
    # (migration 0007, ``store/totals.py``) in the transaction of every change to those rows,
    # so that placement reads one row per sled instead of aggregating every reservation.
    sa.Column("reserved_hardware_threads", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved_memory", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved_local_storage", sa.BigInteger, nullable=False, server_default="0"),
    *_lifetime(soft_deleted=False),
)

instance = sa.Table(
    "instance",
    metadata,
    _key(),
    _in_project(),
    *_named(),
    sa.Column("hostname", sa.String(253), nullable=False),
    sa.Column("ncpus", sa.Integer, nullable=False),
    sa.Column("memory", sa.BigInteger, nullable=False),
    sa.Column("auto_restart_policy", sa.String(16)),
    sa.Column("cpu_platform", sa.String(32)),
    sa.Column("boot_disk_id", Id),
    sa.Column("enable_jumbo_frames", sa.Boolean, nullable=False),
    sa.Column("user_data", sa.Text, nullable=False),
    # creating | no_vmm | vmm | failed | destroyed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("active_vmm_id", Id),
    sa.Column("intended_state", sa.String(16), nullable=False),
    # The event whose reason explains why the instance is not where its user wants it.
    sa.Column("status_event_id", Id),
    # The first event of that trouble (the crash behind "restart attempt 3 failed").
    sa.Column("status_origin_event_id", Id),
    sa.Column("generation", sa.Integer, nullable=False),
    *_lifetime(),
    sa.Column("time_run_state_updated", Time, nullable=False),
    sa.Column("time_last_auto_restarted", Time),
    sa.Column("time_next_auto_restart", Time),
    sa.Column("auto_restart_attempts", sa.Integer, nullable=False, server_default="0"),
)
_unique_live_name(instance, instance.c.project_id)

# The auto-restart task asks every few seconds which instances are due: an index walk over
# the few with a restart scheduled, not a scan of every instance (46 ms at 100,000).
sa.Index(
    "ix_instance_next_auto_restart",
    instance.c.time_next_auto_restart,
    sqlite_where=sa.and_(
        instance.c.time_next_auto_restart.is_not(None), instance.c.time_deleted.is_(None)
    ),
    postgresql_where=sa.and_(
        instance.c.time_next_auto_restart.is_not(None), instance.c.time_deleted.is_(None)
    ),
)

vmm = sa.Table(
    "vmm",
    metadata,
    _key(),
    sa.Column("instance_id", Id, sa.ForeignKey("instance.id"), nullable=False, index=True),
    sa.Column("sled_id", Id, sa.ForeignKey("sled.id"), nullable=False),
    # creating | starting | running | stopping | stopped | rebooting | failed | destroyed
    # | saga_unwound
    sa.Column("state", sa.String(16), nullable=False),
    _created(),
    sa.Column("time_state_updated", Time, nullable=False),
)

sled_reservation = sa.Table(
    "sled_reservation",
    metadata,
    _key(),  # the VMM's id: one reservation per VMM
    sa.Column("sled_id", Id, sa.ForeignKey("sled.id"), nullable=False, index=True),
    sa.Column("instance_id", Id, nullable=False, index=True),
    sa.Column("hardware_threads", sa.Integer, nullable=False),
    sa.Column("memory", sa.BigInteger, nullable=False),
    # Local storage held for the instance's not-yet-pinned local disks while it starts; set
    # to zero when the start succeeds and the disks are pinned to the sled.
    sa.Column("local_storage", sa.BigInteger, nullable=False, server_default="0"),
    _created(),
)

event = sa.Table(
    "instance_event",
    metadata,
    # Commit-ordered cursor for pages and streams; ``id`` is the public, time-ordered UUID.
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("id", Id, nullable=False, unique=True),
    sa.Column("instance_id", Id, nullable=False),
    sa.Column("project_id", Id, nullable=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("time_last", Time, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(48), nullable=False),
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("actor", sa.JSON, nullable=False),
    sa.Column("operation_id", Id),
    sa.Column("run_state", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(48)),
    sa.Column("reason", sa.JSON),
    # Facts about the event that are not a reason (e.g. the affinity preferences a placement
    # had to break). User-visible: never sled ids.
    sa.Column("detail", sa.JSON),
    # seq is never reused, even after the newest row is deleted (coalescing replaces it).
    sqlite_autoincrement=True,
)
sa.Index("ix_instance_event_instance_seq", event.c.instance_id, event.c.seq)
sa.Index("ix_instance_event_project_seq", event.c.project_id, event.c.seq)
# A kind filter (GET /v1/events?kind=, /v1/system/events?kind=) must not scan the whole log
# for a rare kind: these keep its first page an index walk.
sa.Index("ix_instance_event_kind_seq", event.c.kind, event.c.seq)
sa.Index("ix_instance_event_project_kind_seq", event.c.project_id, event.c.kind, event.c.seq)
# The coalescing lookup (newest event of this instance and kind) is one index probe.
sa.Index("ix_instance_event_instance_kind_seq", event.c.instance_id, event.c.kind, event.c.seq)

saga = sa.Table(
    "saga",
    metadata,
    _key(),
    sa.Column("name", sa.String(48), nullable=False),
    # running | unwinding | done | unwound | stuck
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("instance_id", Id, index=True),
    # The replica executing it (steno's "current SEC") and the fence: every write by the
    # executor checks both, so a replica that lost the saga to an adopter cannot write to it.
    sa.Column("current_sec", Id, nullable=False),
    sa.Column("adopt_generation", sa.Integer, nullable=False),
    sa.Column("log_length", sa.Integer, nullable=False),
    sa.Column("error", sa.JSON),
    _created(),
    sa.Column("time_done", Time),
)
sa.Index("ix_saga_state_sec", saga.c.state, saga.c.current_sec)

saga_node_event = sa.Table(
    "saga_node_event",
    metadata,
    sa.Column("saga_id", Id, sa.ForeignKey("saga.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("node_index", sa.Integer, nullable=False),
    sa.Column("node_name", sa.String(64), nullable=False),
    # started | succeeded | failed | undo_started | undo_finished | undo_failed
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("data", sa.JSON),
    sa.Column("time", Time, nullable=False),
)

# Leases: a background task that must run once across the fleet runs where its lease is
# held; a holder that stops renewing (dead or paused) loses it when it expires.
lease = sa.Table(
    "lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", Id, nullable=False),
    sa.Column("expires", Time, nullable=False),
)

replica = sa.Table(
    "replica",
    metadata,
    _key(),
    sa.Column("bind", sa.String(255), nullable=False),
    sa.Column("time_started", Time, nullable=False),
    sa.Column("time_heartbeat", Time, nullable=False),
    # Set when the replica stopped gracefully (cleared when it starts again): its sagas
    # are adopted at once, without waiting for its heartbeat to go stale.
    sa.Column("time_stopped", Time),
)


def _group_table(name: str) -> sa.Table:
    table = sa.Table(
        name,
        metadata,
        _key(),
        _in_project(),
        *_named(),
        sa.Column("policy", sa.String(8), nullable=False),  # allow | fail
        sa.Column("failure_domain", sa.String(8), nullable=False),  # sled
        *_lifetime(),
    )
    _unique_live_name(table, table.c.project_id)
    return table


def _member_table(name: str, group: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("group_id", Id, sa.ForeignKey(f"{group}.id"), primary_key=True),
        sa.Column("instance_id", Id, sa.ForeignKey("instance.id"), primary_key=True, index=True),
    )


affinity_group = _group_table("affinity_group")
anti_affinity_group = _group_table("anti_affinity_group")
affinity_group_member = _member_table("affinity_group_member", "affinity_group")
anti_affinity_group_member = _member_table("anti_affinity_group_member", "anti_affinity_group")

disk = sa.Table(
    "disk",
    metadata,
    _key(),
    _in_project(),
    *_named(),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("block_size", sa.Integer, nullable=False),
    sa.Column("disk_type", sa.String(16), nullable=False),  # local | distributed
    sa.Column("state", sa.String(16), nullable=False),  # detached | attached | destroyed
    sa.Column("instance_id", Id, sa.ForeignKey("instance.id"), index=True),
    # A local disk's sled, set when its instance is first placed: it pins the instance there.
    sa.Column("sled_id", Id, sa.ForeignKey("sled.id"), index=True),
    *_lifetime(),
)
_unique_live_name(disk, disk.c.project_id)

# -- webhooks ------------------------------------------------------------------------------------
# Alert receivers (webhooks) subscribe to event kinds; a dispatcher turns each committed event
# into a delivery row per matching receiver, in one transaction with its cursor, and a
# deliverer sends the due ones. What is acknowledged here (a delivery row) is sent until it
# succeeds or runs out of attempts, across restarts and replicas.

alert_receiver = sa.Table(
    "alert_receiver",
    metadata,
    _key(),
    *_named(),
    sa.Column("endpoint", sa.Text, nullable=False),
    *_lifetime(soft_deleted=False),
    # A deleted receiver goes with its subscriptions, secrets and deliveries: nothing is left
    # to send to, so nothing is kept.
)
sa.Index("uq_alert_receiver_name", alert_receiver.c.name, unique=True)

alert_subscription = sa.Table(
    "alert_subscription",
    metadata,
    sa.Column("receiver_id", Id, sa.ForeignKey("alert_receiver.id"), primary_key=True),
    # An alert class (``instance.start_failed``) or a glob of them (``instance.*``, ``**``).
    sa.Column("pattern", sa.String(255), primary_key=True),
    # Events after this position in the log match it: a subscription sees what happens after
    # it was made, not the history before.
    sa.Column("after_seq", BigInt, nullable=False),
    _created(),
)

webhook_secret = sa.Table(
    "webhook_secret",
    metadata,
    _key(),
    sa.Column("receiver_id", Id, sa.ForeignKey("alert_receiver.id"), nullable=False, index=True),
    sa.Column("secret", sa.Text, nullable=False),
    _created(),
)

alert_delivery = sa.Table(
    "alert_delivery",
    metadata,
    _key(),
    sa.Column("receiver_id", Id, sa.ForeignKey("alert_receiver.id"), nullable=False),
    sa.Column("alert_id", Id, nullable=False),
    sa.Column("alert_class", sa.String(64), nullable=False),
    sa.Column("trigger", sa.String(8), nullable=False),  # alert | resend | probe
    sa.Column("state", sa.String(12), nullable=False),  # pending | delivered | failed
    # The alert as it was when dispatched (an event can be coalesced or aged out later).
    sa.Column("data", sa.JSON, nullable=False),
    # Every attempt so far: [{attempt, time_sent, result, response: {status, duration_ms}}].
    sa.Column("attempts", sa.JSON, nullable=False),
    sa.Column("time_started", Time, nullable=False),
    # When a pending delivery is next due (a claimed one: when its claim lapses).
    sa.Column("time_next_attempt", Time),
)
sa.Index("ix_alert_delivery_receiver_id", alert_delivery.c.receiver_id, alert_delivery.c.id)
sa.Index(
    "ix_alert_delivery_due",
    alert_delivery.c.time_next_attempt,
    sqlite_where=alert_delivery.c.state == "pending",
    postgresql_where=alert_delivery.c.state == "pending",
)
sa.Index("ix_alert_delivery_alert", alert_delivery.c.alert_id, alert_delivery.c.receiver_id)
# Retention deletes the settled deliveries begun before its cutoff.
sa.Index("ix_alert_delivery_time_started", alert_delivery.c.time_started)

# Where the dispatcher is in the event log (one row).
alert_dispatch = sa.Table(
    "alert_dispatch",
    metadata,
    sa.Column("name", sa.String(16), primary_key=True),
    sa.Column("after_seq", BigInt, nullable=False),
)
