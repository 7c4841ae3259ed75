"""Oxide's roles and the one place that decides what a caller may do.

Roles are granted on the fleet, on a silo or on a project and inherited downward: on one
resource admin implies collaborator implies limited collaborator implies viewer; a silo
collaborator (so also a silo admin) is project admin on every project of its silo, a silo
limited collaborator a project limited collaborator, a silo viewer a project viewer. Fleet
roles act on silos and on ``/v1/system``, never inside a silo's projects.

Whether a caller may *see* a resource is decided where the resource is looked up (what it
may not read is not found, as if it did not exist); ``authorize`` decides the rest and
answers ``Forbidden``. Nothing here reads the store: the caller's roles come loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from skylight.errors import Forbidden
from skylight.events.kinds import Actor, user_actor


class Role(IntEnum):
    """Ordered: a role includes every role below it."""

    viewer = 1
    limited_collaborator = 2
    collaborator = 3
    admin = 4


FLEET_ROLES = ("admin", "collaborator", "viewer")
SILO_ROLES = PROJECT_ROLES = ("admin", "collaborator", "limited_collaborator", "viewer")


class Action(Enum):
    """What a request does to a resource, and the least role it takes."""

    read = Role.viewer  # see it
    modify = Role.limited_collaborator  # create, change, start, stop, delete in it
    create_project = Role.collaborator  # (on a silo)
    administer = Role.admin  # change who may do what; fault injection, webhook receivers


@dataclass(frozen=True)
class Caller:
    """An authenticated person, with every role they hold, loaded once per request."""

    user_id: str
    silo_id: str
    silo_name: str
    display_name: str
    fleet_role: Role | None = None
    silo_role: Role | None = None
    project_roles: Mapping[str, Role] = field(default_factory=dict)
    # How the request was authenticated (the audit log says so): session | access_token
    auth_method: str = "session"
    credential_id: str | None = None

    @property
    def actor(self) -> Actor:
        """How an event this caller caused names them."""
        return user_actor(self.user_id, self.display_name)

    @property
    def operator(self) -> bool:
        """Fleet viewers and above see operator detail: internal reasons, sleds, faults."""
        return self.fleet_role is not None

    def project_role(self, silo_id: str, project_id: str) -> Role | None:
        """The caller's role on a project: its own grant there, or what its silo role
        gives it; None when it may not even see the project."""
        if silo_id != self.silo_id:
            return None
        inherited = None
        if self.silo_role is not None:
            inherited = Role.admin if self.silo_role >= Role.collaborator else self.silo_role
        direct = self.project_roles.get(project_id)
        roles = [r for r in (inherited, direct) if r is not None]
        return max(roles) if roles else None


# The control plane acting on its own (background work, the simulated rack's faults): it
# is never an HTTP caller, so it can never be impersonated.
SYSTEM = Caller(
    user_id="00000000-0000-0000-0000-000000000000",
    silo_id="",
    silo_name="",
    display_name="control plane",
    fleet_role=Role.admin,
)


@dataclass(frozen=True)
class Fleet:
    pass


@dataclass(frozen=True)
class Silo:
    id: str


@dataclass(frozen=True)
class ProjectsOf:
    """A silo's collection of projects, which only the silo's own roles reach (a fleet
    admin manages silos, not what is in them)."""

    silo_id: str


@dataclass(frozen=True)
class Project:
    id: str
    silo_id: str


Resource = Fleet | Silo | ProjectsOf | Project
FLEET = Fleet()


def role_on(caller: Caller, resource: Resource) -> Role | None:
    """The caller's effective role on a resource (None: it may not see it)."""
    if caller is SYSTEM:
        return Role.admin
    match resource:
        case Fleet():
            return caller.fleet_role
        case Silo(id=silo_id):
            roles = [caller.silo_role if silo_id == caller.silo_id else None]
            # A fleet viewer reads silos; a fleet collaborator (or admin) manages them.
            if caller.fleet_role is not None:
                roles.append(Role.viewer if caller.fleet_role == Role.viewer else Role.admin)
            present = [r for r in roles if r is not None]
            return max(present) if present else None
        case ProjectsOf(silo_id=silo_id):
            return caller.silo_role if silo_id == caller.silo_id else None
        case Project(id=project_id, silo_id=silo_id):
            return caller.project_role(silo_id, project_id)


def may_see(caller: Caller, resource: Resource) -> bool:
    return role_on(caller, resource) is not None


def authorize(caller: Caller, action: Action, resource: Resource) -> None:
    """Raise ``Forbidden`` unless the caller's role on ``resource`` allows ``action``.

    Visibility is the lookup's job (it answers not-found first); this is only ever asked
    about what the caller can already see, or about the fleet."""
    role = role_on(caller, resource)
    if role is not None and role >= action.value:
        return
    raise Forbidden(_refusal(action, resource))


def _refusal(action: Action, resource: Resource) -> str:
    what = {
        Action.read: "see",
        Action.modify: "change",
        Action.create_project: "create projects in",
        Action.administer: "administer",
    }[action]
    where = {
        Fleet: "the fleet",
        Silo: "this silo",
        ProjectsOf: "this silo",
        Project: "this project",
    }[type(resource)]
    return f"forbidden: you may not {what} {where}"
