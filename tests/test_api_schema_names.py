"""The API's lists and policies are each written once, as generic models
(``models.ResultsPage[Item]``, ``identity_models.RolePolicy[...]``): the served document must
still name each page and policy as the Oxide document does, with the Oxide fields, and show no
generic's own name (pydantic would call a bare parametrisation ``ResultsPage_Project_``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from skylight.api.app import create_app
from skylight.config import Settings
from tests.oxide_schema import document


@cache
def _served() -> dict[str, Any]:
    schemas: dict[str, Any] = create_app(Settings()).openapi()["components"]["schemas"]
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_every_results_page_is_served_under_its_oxide_name() -> None:
    served, oxide = _served(), document()["components"]["schemas"]
    pages = {n for n in served if n.endswith("ResultsPage")}
    assert "ProjectResultsPage" in pages and "AuditLogEntryResultsPage" in pages
    assert not [n for n in served if "[" in n or n.startswith(("ResultsPage", "RolePolicy"))]
    for name in pages:
        page, item = served[name], name.removesuffix("ResultsPage")
        assert list(page["properties"]) == ["items", "next_page"], name
        assert page["properties"]["items"]["items"] == _ref(item), name
        assert page["required"] == ["items"], name
        if name in oxide:  # (Skylight's own lists, e.g. of instance events, are not in it)
            assert oxide[name]["properties"]["items"]["items"] == _ref(item), name


def test_policies_keep_their_oxide_names_and_roles() -> None:
    served, oxide = _served(), document()["components"]["schemas"]
    for kind in ("Fleet", "Silo", "Project"):
        policy, assignment = served[f"{kind}RolePolicy"], served[f"{kind}RoleRoleAssignment"]
        items = policy["properties"]["role_assignments"]["items"]
        assert items == _ref(f"{kind}RoleRoleAssignment")
        assert list(assignment["properties"]) == ["identity_id", "identity_type", "role_name"]
        role = oxide[f"{kind}Role"]
        assert set(assignment["properties"]["role_name"]["enum"]) == set(role["enum"]), kind
