"""Pydantic models of the API: Oxide's shapes, plus Skylight's additions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from skylight.ids import parse_uuid
from skylight.wire import JsonObject

_NAME = re.compile(r"^[a-z]([a-zA-Z0-9-]*[a-zA-Z0-9]+)?$")
# RFC 1035 labels, dot-separated: each begins with a letter or digit and does not end with '-'.
# The Oxide document's pattern (``[a-zA-Z0-9]+[a-zA-Z0-9\-]*(?<!-)`` per label) says the same,
# but on a backtracking engine such as Python's it takes exponential time to refuse a long
# hostname that ends badly (eight labels of ten letters, then "!": 18 s, on the event loop;
# each more label ten times longer): this one has a single way to match each label.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
NAME_PATTERN = (
    r"^(?![0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)"
    r"^[a-z]([a-zA-Z0-9-]*[a-zA-Z0-9]+)?$"
)

GiB = 1024**3


def check_name(value: str) -> str:
    if not 1 <= len(value) <= 63:
        raise ValueError("names must be 1 to 63 characters long")
    if parse_uuid(value) is not None:
        raise ValueError("names cannot be a UUID")
    if not _NAME.fullmatch(value):
        raise ValueError(
            "names must begin with a lower case ASCII letter, be composed exclusively of "
            "lowercase ASCII, uppercase ASCII, numbers, and '-', and may not end with a '-'"
        )
    return value


def check_hostname(value: str) -> str:
    if not 1 <= len(value) <= 253 or not _HOSTNAME.fullmatch(value):
        raise ValueError("hostname must be an RFC 1035 hostname of at most 253 characters")
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": 63}),
]
Hostname = Annotated[
    str,
    AfterValidator(check_hostname),
    WithJsonSchema(
        {"type": "string", "pattern": _HOSTNAME.pattern, "minLength": 1, "maxLength": 253}
    ),
]
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def check_timestamp(value: Any) -> Any:
    """An RFC 3339 date-time, with its time zone (not a number of seconds, a date alone, or a
    time that does not say where: the lax parsing would take each of them for something)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, e.g. 2026-01-01T00:00:00Z"
        )
    return value


def in_utc(value: datetime) -> datetime:
    """The same instant in UTC, which is how the stores keep and compare times (SQLite
    compares them as text: an offset left on would be read as UTC). An instant before
    0001-01-01 or after 9999-12-31 in UTC is the first or last one there is."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (
            datetime.min.replace(tzinfo=UTC)
            if value.year == 1
            else datetime.max.replace(tzinfo=UTC)
        )


Timestamp = Annotated[datetime, BeforeValidator(check_timestamp), AfterValidator(in_utc)]
ByteCount = Annotated[int, Field(ge=0, le=2**63 - 1)]
CpuCount = Annotated[int, Field(ge=0, le=65535)]
AutoRestartPolicy = Literal["never", "best_effort"]
CpuPlatform = Literal["amd_milan", "amd_turin", "amd_turin_v2"]
InstanceState = Literal[
    "creating",
    "starting",
    "running",
    "stopping",
    "stopped",
    "rebooting",
    "migrating",
    "repairing",
    "failed",
    "destroyed",
]


def _text_problem(value: Any) -> str | None:
    """What makes a string in ``value`` (a JSON value) impossible to store, if anything."""
    if isinstance(value, str):
        if "\x00" in value:
            return "must not contain NUL characters"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                # JSON can spell one ("\ud800"), but it is no Unicode text: no store takes it
                return "must be valid Unicode text (not a lone UTF-16 surrogate)"
        return None
    if isinstance(value, list | tuple):
        return next((p for p in map(_text_problem, value) if p), None)
    if isinstance(value, dict):
        found = (_text_problem(k) or _text_problem(v) for k, v in value.items())
        return next((p for p in found if p), None)
    return None


def check_text(value: str) -> str:
    problem = _text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# Free text from a query string that reaches the store (an events filter): what the store
# cannot compare is refused here, on every list that takes it.
QueryText = Annotated[str, AfterValidator(check_text)]


class Strict(BaseModel):
    # strict: JSON types as the Oxide API has them ("4" is not a CPU count, "yes" not a bool).
    model_config = ConfigDict(extra="ignore", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # Refuse here what the store cannot take, rather than fail in the store: NUL
        # (PostgreSQL text) and lone surrogates (no UTF-8 for SQLite or PostgreSQL).
        problem = _text_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


# -- lists -----------------------------------------------------------------------------------

# covariant: the page of a model that extends another is a page of the other too
Item = TypeVar("Item", bound=BaseModel, covariant=True)


class ResultsPage(BaseModel, Generic[Item]):
    """One page of a list, as every Oxide list answers: the items and the token of the next
    page (None after the last). Each list names its own subclass, ``<Item>ResultsPage``,
    because that is the schema name the Oxide document gives it (a bare parametrisation
    would be named ``ResultsPage[Item]``)."""

    items: list[Item]
    next_page: str | None = None


class IdentityMetadata(BaseModel):
    """What a named resource shows first (Oxide flattens its IdentityMetadata into each).
    Only resources whose own fields all come after these extend it: a subclass's fields
    follow its base's, and a view's fields keep the Oxide document's order."""

    id: str
    name: str
    description: str
    time_created: datetime
    time_modified: datetime


# -- errors ----------------------------------------------------------------------------------


class Error(BaseModel):
    request_id: str
    error_code: str | None = None
    message: str
    reason: JsonObject | None = Field(
        default=None, description="Skylight: the explained reason of a failed operation."
    )


# -- projects --------------------------------------------------------------------------------


class ProjectCreate(Strict):
    name: Name
    description: str = Field(max_length=512)


class ProjectUpdate(Strict):
    name: Name | None = None
    description: Annotated[str, Field(max_length=512)] | None = None


class Project(IdentityMetadata): ...


class ProjectResultsPage(ResultsPage[Project]): ...


# -- instances -------------------------------------------------------------------------------


class InstanceCreate(Strict):
    name: Name
    description: str = Field(max_length=512)
    hostname: Hostname
    ncpus: CpuCount
    memory: ByteCount
    start: bool = True
    auto_restart_policy: AutoRestartPolicy | None = None
    cpu_platform: CpuPlatform | None = None
    enable_jumbo_frames: bool = False
    user_data: str = Field(default="", max_length=32 * 1024)
    anti_affinity_groups: list[NameOrId] = Field(default_factory=list)
    disks: list[InstanceDiskAttachment] = Field(default_factory=list)
    boot_disk: InstanceDiskAttachment | None = None
    external_ips: list[JsonObject] = Field(default_factory=list)
    network_interfaces: JsonObject | None = None
    ssh_public_keys: list[str] | None = None
    multicast_groups: list[JsonObject] = Field(default_factory=list)


class InstanceUpdate(Strict):
    ncpus: CpuCount
    memory: ByteCount
    auto_restart_policy: AutoRestartPolicy | None
    boot_disk: NameOrId | None
    cpu_platform: CpuPlatform | None
    enable_jumbo_frames: bool
    multicast_groups: list[JsonObject] | None = None


class AutoRestartProgress(BaseModel):
    """Skylight: where automatic restart stands for an instance in trouble."""

    state: Literal["scheduled", "restarting", "gave_up", "off"]
    attempts: int = Field(description="automatic restarts begun since the trouble began")
    next_attempt: datetime | None = None


class StatusReason(BaseModel):
    """Skylight: why the instance is not where its user wants it, and the story of it: since
    when, what happened, what Skylight is doing about it, and what the user can do
    (``action``, the one fix)."""

    code: str
    message: str
    transient: bool
    action: str | None = None
    diagnosis: JsonObject | None = None
    internal: JsonObject | None = None
    event_id: str
    time: datetime
    since: datetime = Field(description="when the trouble began")
    happened: str = Field(description="what happened since then, first to latest")
    doing: str = Field(description="what Skylight is doing about it")
    auto_restart: AutoRestartProgress | None = None


class Instance(BaseModel):
    id: str
    name: str
    description: str
    hostname: str
    project_id: str
    ncpus: int
    memory: int
    run_state: InstanceState
    time_created: datetime
    time_modified: datetime
    time_run_state_updated: datetime
    auto_restart_enabled: bool
    auto_restart_policy: AutoRestartPolicy | None = None
    auto_restart_cooldown_expiration: datetime | None = None
    time_last_auto_restarted: datetime | None = None
    boot_disk_id: str | None = None
    cpu_platform: CpuPlatform | None = None
    enable_jumbo_frames: bool
    intended_state: Literal["running", "stopped", "destroyed"]
    status_reason: StatusReason | None = None


class InstanceResultsPage(ResultsPage[Instance]): ...


# -- events ----------------------------------------------------------------------------------


class InstanceEvent(BaseModel):
    id: str
    instance_id: str
    project_id: str
    time: datetime
    time_last: datetime
    count: int
    kind: str
    severity: Literal["info", "warning", "error"]
    actor: JsonObject
    operation_id: str | None = None
    run_state: str
    reason: JsonObject | None = None
    detail: JsonObject | None = None


class InstanceEventResultsPage(ResultsPage[InstanceEvent]): ...


# -- sleds -----------------------------------------------------------------------------------


class Baseboard(BaseModel):
    part: str
    revision: int
    serial: str


class Sled(BaseModel):
    id: str
    baseboard: Baseboard
    policy: JsonObject
    rack_id: str
    slot: int | None = None
    state: Literal["active", "decommissioned"]
    time_created: datetime
    time_modified: datetime
    usable_hardware_threads: int
    usable_physical_ram: int
    # Skylight additions
    cpu_family: str
    local_storage: int
    reserved_hardware_threads: int
    reserved_memory: int
    reserved_local_storage: int


class SledResultsPage(ResultsPage[Sled]): ...


class SledInstance(BaseModel):
    id: str
    active_sled_id: str
    memory: int
    migration_id: str | None = None
    name: str
    ncpus: int
    project_name: str
    silo_name: str
    state: InstanceState
    time_created: datetime
    time_modified: datetime


class SledInstanceResultsPage(ResultsPage[SledInstance]): ...


class SledProvisionPolicyParams(Strict):
    state: Literal["provisionable", "non_provisionable"]


class SledProvisionPolicyResponse(BaseModel):
    old_state: Literal["provisionable", "non_provisionable"]
    new_state: Literal["provisionable", "non_provisionable"]


# -- simulated rack --------------------------------------------------------------------------


class FaultCreate(Strict):
    sled: str | None = None
    instance: str | None = None
    at: Literal["register", "ensure_running", "unregister", "stop"]
    kind: Literal["error", "vmm_gone", "hang"]
    count: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    message: str = Field(default="injected fault", max_length=1024)


class Fault(BaseModel):
    id: str
    sled: str | None
    instance: str | None
    at: str
    kind: str
    count: int | None
    message: str


class FaultResultsPage(ResultsPage[Fault]): ...


NameOrIdSortMode = Literal["name_ascending", "name_descending", "id_ascending"]
IdSortMode = Literal["id_ascending"]


# -- affinity and anti-affinity groups -------------------------------------------------------


def check_name_or_id(value: str) -> str:
    """A ``NameOrId`` in a body: a UUID (kept in canonical form) or a valid name."""
    parsed = parse_uuid(value)
    if parsed is not None:
        return str(parsed)
    return check_name(value)


NameOrId = Annotated[
    str,
    AfterValidator(check_name_or_id),
    WithJsonSchema({"type": "string", "description": "A name or a UUID"}),
]
AffinityPolicy = Literal["allow", "fail"]
FailureDomain = Literal["sled"]


class AffinityGroupCreate(Strict):
    name: Name
    description: str = Field(max_length=512)
    policy: AffinityPolicy
    failure_domain: FailureDomain


class AffinityGroupUpdate(Strict):
    name: Name | None = None
    description: Annotated[str, Field(max_length=512)] | None = None


class AffinityGroup(BaseModel):
    id: str
    name: str
    description: str
    policy: AffinityPolicy
    failure_domain: FailureDomain
    project_id: str
    time_created: datetime
    time_modified: datetime


class AffinityGroupResultsPage(ResultsPage[AffinityGroup]): ...


class AntiAffinityGroupCreate(AffinityGroupCreate):
    pass


class AntiAffinityGroupUpdate(AffinityGroupUpdate):
    pass


class AntiAffinityGroup(AffinityGroup):
    pass


class AntiAffinityGroupResultsPage(ResultsPage[AntiAffinityGroup]): ...


class InstanceMember(BaseModel):
    id: str
    name: str
    run_state: InstanceState


class AffinityGroupMember(BaseModel):
    type: Literal["instance"] = "instance"
    value: InstanceMember


class AffinityGroupMemberResultsPage(ResultsPage[AffinityGroupMember]): ...


class AntiAffinityGroupMember(AffinityGroupMember):
    pass


class AntiAffinityGroupMemberResultsPage(ResultsPage[AntiAffinityGroupMember]): ...


# -- disks -----------------------------------------------------------------------------------

BlockSize = Literal[512, 2048, 4096]
DiskType = Literal["distributed", "local"]


class DiskSourceBlank(Strict):
    type: Literal["blank"]
    block_size: BlockSize


class DiskSourceSnapshot(Strict):
    type: Literal["snapshot"]
    snapshot_id: str
    read_only: bool = False


class DiskSourceImage(Strict):
    type: Literal["image"]
    image_id: str
    read_only: bool = False


class DiskSourceImportingBlocks(Strict):
    type: Literal["importing_blocks"]
    block_size: BlockSize


DiskSource = Annotated[
    DiskSourceBlank | DiskSourceSnapshot | DiskSourceImage | DiskSourceImportingBlocks,
    Field(discriminator="type"),
]


class DiskBackendLocal(Strict):
    type: Literal["local"]


class DiskBackendDistributed(Strict):
    type: Literal["distributed"]
    disk_source: DiskSource


DiskBackend = Annotated[DiskBackendLocal | DiskBackendDistributed, Field(discriminator="type")]


class DiskCreate(Strict):
    name: Name
    description: str = Field(max_length=512)
    size: ByteCount
    disk_backend: DiskBackend


class InstanceDiskAttachmentCreate(DiskCreate):
    type: Literal["create"]


class InstanceDiskAttachmentAttach(Strict):
    type: Literal["attach"]
    name: Name


InstanceDiskAttachment = Annotated[
    InstanceDiskAttachmentCreate | InstanceDiskAttachmentAttach, Field(discriminator="type")
]


class DiskPath(Strict):
    disk: NameOrId


class DiskStateDetached(BaseModel):
    state: Literal[
        "creating",
        "detached",
        "import_ready",
        "importing_from_url",
        "importing_from_bulk_writes",
        "finalizing",
        "maintenance",
        "destroyed",
        "faulted",
    ]


class DiskStateAttached(BaseModel):
    state: Literal["attaching", "attached", "detaching"]
    instance: str


DiskState = Annotated[DiskStateDetached | DiskStateAttached, Field(discriminator="state")]


class Disk(BaseModel):
    id: str
    name: str
    description: str
    project_id: str
    time_created: datetime
    time_modified: datetime
    block_size: BlockSize
    device_path: str
    disk_type: DiskType
    image_id: str | None = None
    snapshot_id: str | None = None
    read_only: bool = False
    size: int
    state: DiskState


class DiskResultsPage(ResultsPage[Disk]): ...


# InstanceCreate and InstanceUpdate refer to types defined after them.
InstanceCreate.model_rebuild()
InstanceUpdate.model_rebuild()


class PlacementExplanation(BaseModel):
    """Skylight: a placement dry run for an instance, as if it started now."""

    instance_id: str
    fits: bool
    sled_id: str | None = Field(default=None, description="operators only")
    current_sled_id: str | None = Field(default=None, description="operators only")
    request: JsonObject
    broken_preferences: list[dict[str, str]]
    reason: JsonObject | None = None


# -- alerts and webhooks (operators) ---------------------------------------------------------


class AlertClass(BaseModel):
    name: str
    description: str


class AlertClassResultsPage(ResultsPage[AlertClass]): ...


class WebhookSecret(BaseModel):
    id: str
    time_created: datetime


class WebhookSecrets(BaseModel):
    secrets: list[WebhookSecret]


class WebhookSecretCreate(Strict):
    secret: str


class WebhookReceiverConfig(BaseModel):
    kind: Literal["webhook"] = "webhook"
    endpoint: str
    secrets: list[WebhookSecret]


class AlertReceiver(IdentityMetadata):
    subscriptions: list[str]
    kind: WebhookReceiverConfig


class AlertReceiverResultsPage(ResultsPage[AlertReceiver]): ...


class WebhookReceiver(IdentityMetadata):
    subscriptions: list[str]
    endpoint: str
    secrets: list[WebhookSecret]


class WebhookCreate(Strict):
    name: Name
    description: str = Field(max_length=512)
    endpoint: str
    secrets: list[str]
    subscriptions: list[str] = Field(default_factory=list)


class WebhookReceiverUpdate(Strict):
    name: Name | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    endpoint: str | None = None


class AlertSubscriptionCreate(Strict):
    subscription: str


class AlertSubscriptionCreated(BaseModel):
    subscription: str


class WebhookDeliveryResponse(BaseModel):
    status: int
    duration_ms: int


class WebhookDeliveryAttempt(BaseModel):
    attempt: int
    time_sent: datetime
    result: Literal["succeeded", "failed_http_error", "failed_unreachable", "failed_timeout"]
    response: WebhookDeliveryResponse | None = None
    # Skylight's addition: why an attempt was not sent (its endpoint's host is, or resolves
    # to, an address webhooks may not reach); null otherwise.
    detail: str | None = None


class AlertDeliveryAttempts(BaseModel):
    webhook: list[WebhookDeliveryAttempt]


class AlertDelivery(BaseModel):
    id: str
    receiver_id: str
    alert_class: str
    alert_id: str
    state: Literal["pending", "delivered", "failed"]
    trigger: Literal["alert", "resend", "probe"]
    attempts: AlertDeliveryAttempts
    time_started: datetime


class AlertDeliveryResultsPage(ResultsPage[AlertDelivery]): ...


class AlertProbeResult(BaseModel):
    probe: AlertDelivery
    resends_started: int | None = None


class AlertDeliveryId(BaseModel):
    delivery_id: str
