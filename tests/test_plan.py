"""The reconcile planner on plain data: what one pass loads, withdraws, refuses and looks at again."""

from __future__ import annotations

from hayhooks_gunicorn.reload.plan import Current, OnDisk, needs_load, plan_pass


def disk(revision: str = "r1", location: str = "/p/x", **flags: object) -> OnDisk:
    return OnDisk(revision=revision, location=location, **flags)  # type: ignore[arg-type]


def test_new_and_changed_names_load_unchanged_ones_do_not() -> None:
    now = Current(served={"same": ("r1", "/p/x"), "edited": ("r1", "/p/x")})
    plan = plan_pass({"same": disk(), "edited": disk("r2"), "new": disk()}, now)
    assert plan.load == ["edited", "new"] and plan.refuse == {} and not plan.rerun


def test_a_swapped_link_reloads_an_unchanged_revision_from_its_new_place() -> None:
    now = Current(served={"x": ("r1", "/releases/a/x")})
    assert plan_pass({"x": disk(location="/releases/b/x")}, now).load == ["x"]


def test_the_revision_that_failed_is_not_loaded_again_the_next_one_is() -> None:
    now = Current(failed={"x": "r1"})
    assert plan_pass({"x": disk("r1")}, now).load == []
    assert plan_pass({"x": disk("r2")}, now).load == ["x"]
    assert not needs_load("x", disk("r1"), now)


def test_a_busy_name_is_looked_at_again_when_it_changed_meanwhile() -> None:
    now = Current(loading={"x": ("r1", "/p/x")})
    same = plan_pass({"x": disk("r1")}, now)
    assert same.load == [] and not same.rerun
    changed = plan_pass({"x": disk("r2")}, now)
    assert changed.load == [] and changed.rerun
    vanished = plan_pass({}, now)
    assert vanished.rerun and vanished.gone == []  # a name loading is not withdrawn


def test_gone_names_failures_and_conflicts_are_forgotten() -> None:
    now = Current(
        served={"kept": ("r1", "/p/x"), "gone": ("r1", "/p/x")},
        failed={"gone_failed": "r1", "still": "r1"},
        conflicts=["ended", "goes_on"],
    )
    desired = {"kept": disk(), "still": disk(), "ended": disk(), "goes_on": disk(conflict=True)}
    plan = plan_pass(desired, now)
    assert plan.gone == ["gone"] and plan.forget_failed == ["gone_failed"] and plan.forget_conflicts == ["ended"]


def test_a_route_clash_and_a_quarantined_revision_fail_without_a_load() -> None:
    plan = plan_pass(
        {
            "healthz": disk(clashes=True),
            "broken_clash": disk(clashes=True, broken=True),  # the scan's own error is reported by the load
            "bad": disk("r9", quarantined="killed its worker while loading (SIGKILL)"),
        },
        Current(),
    )
    assert plan.load == ["broken_clash"]
    assert plan.refuse == {
        "healthz": "Pipeline name 'healthz' clashes with a server route",
        "bad": "quarantined: rev r9 killed its worker while loading (SIGKILL)",
    }
