"""The master's roll decides from revisions alone (``master.roll_on_change.plan_roll``), on plain data."""

from __future__ import annotations

from hayhooks_gunicorn.master.roll_on_change import plan_roll


def test_nothing_to_roll_when_the_workers_serve_the_set_on_disk() -> None:
    plan = plan_roll({"rag": "a"}, {"rag": "a"}, None)
    assert plan.changed == () and plan.reason == "the workers serve this set"


def test_added_changed_and_removed_names_are_rolled_out() -> None:
    plan = plan_roll({"rag": "b", "new": "n", "same": "s"}, {"rag": "a", "gone": "g", "same": "s"}, None)
    assert plan.changed == ("gone", "new", "rag")
    assert plan.reason == "changed: gone, new, rag"


def test_a_set_that_failed_to_roll_waits_for_the_next_change() -> None:
    failed = {"rag": "broken"}
    assert plan_roll({"rag": "broken"}, {"rag": "a"}, failed).changed == ()
    assert plan_roll({"rag": "fixed"}, {"rag": "a"}, failed).changed == ("rag",)


def test_going_back_to_the_served_set_after_a_failure_needs_no_roll() -> None:
    assert plan_roll({"rag": "a"}, {"rag": "a"}, {"rag": "broken"}).changed == ()
