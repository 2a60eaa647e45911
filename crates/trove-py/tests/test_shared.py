"""The shared tier from Python: two project checkouts ("machines") with stores of their
own and one team store (a directory reached by a file:// URL, what a mounted shared file
system is). The servers and the network namespaces are the Rust suites' business."""

from __future__ import annotations

from pathlib import Path

from conftest import Project

SECRET = "the team's secret, thirty-two b."

RECIPES = """
import trove
from buildlog import log

@trove.recipe
def size(name):
    log(f"size {name}")
    with open(name) as f:
        return len(f.read())
"""


def _machine(root: Path, team: Path, data: str) -> Project:
    p = Project(root)
    p.write("trove.ron", f'(shared: (url: "file://{team}"))')
    p.write("recipes.py", RECIPES)
    p.write("data.txt", data)
    return p


def test_a_second_machine_is_served_what_the_first_built_and_a_different_one_is_not(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    a = _machine(tmp_path / "a", team, "x" * 100)
    b = _machine(tmp_path / "elsewhere" / "b", team, "x" * 100)
    c = _machine(tmp_path / "c", team, "y" * 50)

    assert a.call("size", "data.txt", TROVE_SHARED_SECRET=SECRET) == {"value": 100, "reason": "built: no entry"}
    assert a.builds() == ["size data.txt"]
    assert any(team.rglob("records/*/*/*")), "A's process uploaded its object before it exited"

    # B has the same code and data at another path: served from the team's store, then
    # from its own disk.
    assert b.call("size", "data.txt", TROVE_SHARED_SECRET=SECRET) == {"value": 100, "reason": "hit shared"}
    assert b.builds() == []
    assert b.call("size", "data.txt", TROVE_SHARED_SECRET=SECRET)["reason"] == "hit disk"

    # C's data differs: A's object is not C's.
    served = c.call("size", "data.txt", TROVE_SHARED_SECRET=SECRET)
    assert served["value"] == 50
    assert served["reason"].startswith("built: "), served
    assert c.builds() == ["size data.txt"]


def test_a_machine_with_another_secret_refuses_the_team_object_and_builds(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    a = _machine(tmp_path / "a", team, "x" * 100)
    b = _machine(tmp_path / "b", team, "x" * 100)
    assert a.call("size", "data.txt", TROVE_SHARED_SECRET=SECRET)["reason"] == "built: no entry"
    served = b.call("size", "data.txt", TROVE_SHARED_SECRET="another team's secret, 32 bytes.")
    assert served["value"] == 100
    assert served["reason"].startswith("built: shared record refused"), served
    assert b.builds() == ["size data.txt"]
