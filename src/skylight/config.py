"""Settings of one control-plane replica, from CLI flags and ``SKYLIGHT_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from sqlalchemy.engine import make_url

GiB = 1024**3


@dataclass
class SimSettings:
    """The in-process simulated rack."""

    enabled: bool = True
    sleds: int = 8
    sled_cpus: int = 64
    sled_memory_gib: int = 512
    sled_local_storage_gib: int = 2048
    cpu_family: str = "amd_milan"
    start_delay: float = 0.5  # seconds from creating to running


@dataclass
class Settings:
    bind: str = "127.0.0.1:12220"
    db_url: str | None = None  # None: sqlite file under data_dir
    data_dir: Path = field(default_factory=lambda: Path(".skylight"))
    # The rack secret shared with sled agents and the other replicas (see rack_secret.py);
    # None: DATA_DIR/rack-secret, generated on the first start.
    rack_secret_file: Path | None = None
    start_wait: float = 30.0  # seconds a start request waits for its saga
    auto_restart_cooldown: float = 300.0
    # How often the auto-restart task looks for failed instances, and the backoff between
    # attempts whose reason is transient (doubling from the first delay up to the cap).
    auto_restart_interval: float = 5.0
    auto_restart_backoff: float = 10.0
    auto_restart_backoff_max: float = 600.0
    auto_restart_batch: int = 16
    # Event streams look for other replicas' events this often, and send a heartbeat
    # comment when idle this long. Retention runs every interval.
    # Replicas heartbeat this often; one silent for adoption_timeout loses its sagas to a
    # live replica (and its leases on fleet-wide background tasks).
    heartbeat_interval: float = 1.0
    adoption_timeout: float = 10.0
    stream_poll_interval: float = 1.0
    stream_heartbeat: float = 15.0
    # Event streams open at once on this replica, in all and per user (429 past either).
    max_streams: int = 512
    max_streams_per_user: int = 32
    event_retention_interval: float = 3600.0
    event_retention_keep: int = 100
    event_retention_days: int = 30
    sim: SimSettings = field(default_factory=SimSettings)
    # Sled-agent calls that take longer than this count as failed (a "hang" fault).
    sled_call_timeout: float = 10.0
    # HTTP sled agents are checked this often; one silent for sled_failure_timeout has
    # failed, and the instances running on it with it (cause sled_failure).
    sled_health_interval: float = 2.0
    sled_failure_timeout: float = 15.0
    # Attempts at an undo action before the saga is declared stuck.
    # A stopping replica lets running actions reach their next log entry for this long
    # before it cancels them; every saga is handed to a live peer as soon as it stops.
    drain_timeout: float = 10.0
    # The auditor looks this often for instances in the dark: not where their user wants
    # them, no operation making progress for audit_after seconds, and no status reason.
    audit_interval: float = 10.0
    audit_after: float = 120.0
    # A starting replica whose store cannot be reached (a rack powering on, a database
    # failing over) waits this long for it before it gives up.
    store_wait: float = 120.0
    undo_attempts: int = 5
    undo_retry_delay: float = 0.2
    max_body_bytes: int = 1024 * 1024
    # Placement decides on the rack as this replica read it at most this long ago (0: read
    # it for every decision); the chosen sled is always re-checked fresh under its lock.
    placement_rack_max_age: float = 1.0
    # Webhooks: the lease holder dispatches new events and sends due deliveries this often
    # (and at once when it commits events). A delivery gets webhook_attempts tries, the
    # next one webhook_backoff seconds after the first failure, then 6x longer each time up
    # to webhook_backoff_max; each request may take webhook_timeout seconds.
    webhook_interval: float = 1.0
    webhook_timeout: float = 10.0
    webhook_attempts: int = 6
    webhook_backoff: float = 10.0
    webhook_backoff_max: float = 3600.0
    # Identity. The first start on an empty store makes the recovery silo and its admin,
    # whose password is this (from --recovery-password-file or SKYLIGHT_RECOVERY_PASSWORD),
    # or, when None, one generated into DATA_DIR/recovery-password.
    recovery_silo: str = "recovery"
    recovery_user: str = "admin"
    recovery_password: str | None = None
    # argon2id's time cost and memory (KiB) for new password hashes (the default: RFC 9106's
    # low-memory profile, about 50 ms on one core).
    password_hash_cost: tuple[int, int] = (3, 65536)
    # A console session ends after this long unused, and this long after login at most;
    # device access tokens live token_max_ttl (None: until revoked) unless asked for less.
    session_idle: float = 8 * 3600.0
    session_absolute: float = 24 * 3600.0
    token_max_ttl: float | None = None
    # Networks webhooks may reach although the destination rule refuses them (loopback,
    # private, link-local ...: webhooks/destination.py); cloud metadata stays refused.
    webhook_allow_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'skylight.db').resolve()}"

    def shown_db_url(self) -> str:
        """The store's URL as it may be shown in a log: without its password."""
        return make_url(self.resolved_db_url()).render_as_string(hide_password=True)

    @property
    def host(self) -> str:
        return self.bind.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])
