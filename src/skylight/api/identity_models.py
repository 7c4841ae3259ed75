"""The Oxide API's shapes for silos, users, sessions, tokens, policies and quotas, and how a
stored row is shown in them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, field_validator

from skylight.api.metadata import identity, times
from skylight.api.models import ByteCount, Name, ResultsPage, Strict
from skylight.clock import as_utc
from skylight.ids import parse_uuid
from skylight.store import Row

_USERNAME = re.compile(r"^[a-z]([a-zA-Z0-9-]*[a-zA-Z0-9]+)?$")
USERNAME_PATTERN = (
    r"^(?![0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)"
    r"^[a-z]([a-zA-Z0-9-]*[a-zA-Z0-9]+)?$"
)


def check_username(value: str) -> str:
    if not 1 <= len(value) <= 63 or parse_uuid(value) is not None or not _USERNAME.match(value):
        raise ValueError(
            "usernames must begin with a lower case ASCII letter, be composed of ASCII "
            "letters, digits and '-', not end with '-', not be a UUID, and be at most 63 long"
        )
    return value


UserId = Annotated[
    str,
    AfterValidator(check_username),
    WithJsonSchema(
        {"type": "string", "pattern": USERNAME_PATTERN, "minLength": 1, "maxLength": 63}
    ),
]
Password = Annotated[str, Field(max_length=512)]
FleetRole = Literal["admin", "collaborator", "viewer"]
SiloRole = Literal["admin", "collaborator", "limited_collaborator", "viewer"]
IdentityType = Literal["silo_user", "silo_group"]


def _time(value: datetime) -> datetime:
    return as_utc(value)


# -- login and tokens ------------------------------------------------------------------------


class UsernamePasswordCredentials(Strict):
    username: UserId
    password: Password


class DeviceAuthVerify(Strict):
    user_code: str = Field(max_length=64)


class DeviceAccessToken(BaseModel):
    id: str
    time_created: datetime
    time_expires: datetime | None = None

    @classmethod
    def of(cls, row: Row) -> DeviceAccessToken:
        expires = None if row.time_expires is None else _time(row.time_expires)
        return cls(id=row.id, time_created=_time(row.time_created), time_expires=expires)


class DeviceAccessTokenResultsPage(ResultsPage[DeviceAccessToken]): ...


class CurrentUser(BaseModel):
    id: str
    display_name: str
    silo_id: str
    silo_name: str
    fleet_viewer: bool
    silo_admin: bool
    time_created: datetime
    time_modified: datetime


class Group(BaseModel):
    id: str
    display_name: str
    silo_id: str
    time_created: datetime
    time_modified: datetime


class GroupResultsPage(ResultsPage[Group]): ...


# -- silos and users -------------------------------------------------------------------------


class SiloQuotasCreate(Strict):
    cpus: int = Field(ge=0, le=2**62)
    memory: ByteCount
    storage: ByteCount


class SiloQuotasUpdate(Strict):
    cpus: Annotated[int, Field(ge=0, le=2**62)] | None = None
    memory: ByteCount | None = None
    storage: ByteCount | None = None


class SiloCreate(Strict):
    name: Name
    description: str = Field(max_length=512)
    discoverable: bool
    identity_mode: str
    quotas: SiloQuotasCreate
    admin_group_name: str | None = None
    mapped_fleet_roles: dict[str, list[FleetRole]] = Field(default_factory=dict)
    tls_certificates: list[dict[str, str]] = Field(default_factory=list)

    @field_validator("identity_mode")
    @classmethod
    def _local_only(cls, value: str) -> str:
        if value != "local_only":
            raise ValueError(
                f"identity mode {value!r} is not supported: Skylight silos are local_only"
            )
        return value

    @field_validator("admin_group_name")
    @classmethod
    def _no_groups(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("groups are not supported: leave admin_group_name out")
        return value

    @field_validator("mapped_fleet_roles")
    @classmethod
    def _no_mapping(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if any(value.values()):
            raise ValueError("mapping silo roles to fleet roles is not supported")
        return value


class Silo(BaseModel):
    id: str
    name: str
    description: str
    discoverable: bool
    identity_mode: str
    mapped_fleet_roles: dict[str, list[str]] = Field(default_factory=dict)
    admin_group_name: str | None = None
    time_created: datetime
    time_modified: datetime

    @classmethod
    def of(cls, row: Row) -> Silo:
        return cls(**identity(row), discoverable=row.discoverable, identity_mode=row.identity_mode)


class SiloResultsPage(ResultsPage[Silo]): ...


class SiloQuotas(BaseModel):
    silo_id: str
    cpus: int
    memory: int
    storage: int

    @classmethod
    def of(cls, row: Row) -> SiloQuotas:
        return cls(
            silo_id=row.id, cpus=row.quota_cpus, memory=row.quota_memory, storage=row.quota_storage
        )


class VirtualResourceCounts(BaseModel):
    cpus: int
    memory: int
    storage: int


class Utilization(BaseModel):
    capacity: VirtualResourceCounts
    provisioned: VirtualResourceCounts


class SiloUtilization(BaseModel):
    silo_id: str
    silo_name: str
    allocated: VirtualResourceCounts
    provisioned: VirtualResourceCounts


class SiloUtilizationResultsPage(ResultsPage[SiloUtilization]): ...


class SiloQuotasResultsPage(ResultsPage[SiloQuotas]): ...


class UserPasswordSet(Strict):
    mode: Literal["password"]
    value: Password


class UserPasswordDisallowed(Strict):
    mode: Literal["login_disallowed"]


UserPassword = Annotated[UserPasswordSet | UserPasswordDisallowed, Field(discriminator="mode")]


def password_of(choice: UserPassword) -> str | None:
    """The password a user is given, or None: they may not log in with one."""
    return choice.value if isinstance(choice, UserPasswordSet) else None


class UserCreate(Strict):
    external_id: UserId
    password: UserPassword


class User(BaseModel):
    id: str
    display_name: str
    silo_id: str
    time_created: datetime
    time_modified: datetime

    @classmethod
    def of(cls, row: Row) -> User:
        return cls(id=row.id, display_name=row.name, silo_id=row.silo_id, **times(row))


class UserResultsPage(ResultsPage[User]): ...


# -- policies --------------------------------------------------------------------------------


_Role = TypeVar("_Role", FleetRole, SiloRole)


class RoleAssignment(Strict, Generic[_Role]):
    """One role given to one identity: the three kinds of policy differ only in their roles.
    Each kind names its own subclass, as the Oxide document does (``FleetRoleRoleAssignment``
    and so on)."""

    identity_id: str
    identity_type: IdentityType
    role_name: _Role

    @field_validator("identity_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if parse_uuid(value) is None:
            raise ValueError("not a UUID")
        return value.lower()


_Assignment = TypeVar("_Assignment", bound=RoleAssignment[FleetRole] | RoleAssignment[SiloRole])


class RolePolicy(Strict, Generic[_Assignment]):
    role_assignments: list[_Assignment] = Field(max_length=64)


class FleetRoleRoleAssignment(RoleAssignment[FleetRole]): ...


class SiloRoleRoleAssignment(RoleAssignment[SiloRole]): ...


class ProjectRoleRoleAssignment(RoleAssignment[SiloRole]): ...


class FleetRolePolicy(RolePolicy[FleetRoleRoleAssignment]): ...


class SiloRolePolicy(RolePolicy[SiloRoleRoleAssignment]): ...


class ProjectRolePolicy(RolePolicy[ProjectRoleRoleAssignment]): ...


# -- the audit log ---------------------------------------------------------------------------


class AuditLogEntry(BaseModel):
    id: str
    time_started: datetime
    time_completed: datetime
    request_id: str
    request_uri: str
    operation_id: str
    source_ip: str
    user_agent: str | None = None
    actor: dict[str, str]
    auth_method: str | None = None
    credential_id: str | None = None
    result: dict[str, str | int | None]

    @classmethod
    def of(cls, row: Row) -> AuditLogEntry:
        actor = (
            {"kind": "silo_user", "silo_id": row.actor_silo_id, "silo_user_id": row.actor_user_id}
            if row.actor_user_id
            else {"kind": "unauthenticated"}
        )
        result: dict[str, str | int | None] = (
            {"kind": "success", "http_status_code": row.http_status_code}
            if row.http_status_code < 400
            else {
                "kind": "error",
                "http_status_code": row.http_status_code,
                "error_code": row.error_code,
                "error_message": row.error_message or "",
            }
        )
        return cls(
            id=row.id,
            time_started=_time(row.time_started),
            time_completed=_time(row.time_completed),
            request_id=row.request_id,
            request_uri=row.request_uri,
            operation_id=row.operation_id,
            source_ip=row.source_ip,
            user_agent=row.user_agent,
            actor=actor,
            auth_method=row.auth_method,
            credential_id=row.credential_id,
            result=result,
        )


class AuditLogEntryResultsPage(ResultsPage[AuditLogEntry]): ...
