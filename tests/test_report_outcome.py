"""deployment_outcome: the status and reason a user reads, from step results and events."""

from __future__ import annotations

from stratoflow.execution.report import deployment_outcome

PLAN = {
    "steps": [
        {"id": "broker", "kind": "broker"},
        {"id": "provision", "kind": "provision"},
        {"id": "count", "kind": "job"},
        {"id": "stage_out", "kind": "stage_out"},
        {"id": "teardown", "kind": "teardown"},
        {"id": "report", "kind": "report"},
    ],
    "outputs": {"where": {"value": {"get_input": "out"}}},
}
ALLOC = {"site": "beta", "workdir": "/w"}
STAGED = {"results_dir": "/r", "files": []}
ALL_DONE = {"broker": {}, "provision": ALLOC, "count": [{}], "stage_out": STAGED, "teardown": {}}
USAGE = {"core_seconds": 3.0}


def outcome(results=None, events=(), inputs=None):
    return deployment_outcome(
        PLAN, dict(ALL_DONE if results is None else results), list(events), inputs or {}, USAGE
    )


def ev(step, kind, message):
    return {"step": step, "kind": kind, "message": message}


def test_success_carries_outputs_usage_and_resolved_template_outputs():
    o = outcome(inputs={"out": "/results"})
    assert (o.status, o.reason) == ("CREATE_COMPLETE", "")
    assert o.outputs == {"usage": USAGE, "stage_out": STAGED, "where": "/results"}


def test_a_failed_step_is_the_reason_prefixed_by_its_name_once():
    results = {**ALL_DONE, "count": None, "stage_out": None}
    events = [
        ev("count", "retry", "count[0]: exit code 3: boom"),
        ev("count", "failed", "count[0]: exit code 3: boom"),
        ev("count", "failed", "count[0]: exit code 3: boom"),
        ev("stage_out", "failed", "ChecksumMismatch: f.txt"),
    ]
    o = outcome(results, events)
    assert o.status == "CREATE_FAILED"
    # Duplicates collapse; a message already naming its step is not prefixed again; the
    # stage-out placeholder is not added when a real failure explains it.
    assert o.reason == "count[0]: exit code 3: boom; stage_out: ChecksumMismatch: f.txt"


def test_an_unexplained_missing_stage_out_is_named():
    o = outcome({**ALL_DONE, "stage_out": None})
    assert o.status == "CREATE_FAILED"
    assert o.reason == "stage_out: did not complete (an upstream step failed)"


def test_a_teardown_that_did_not_finish_warns_of_leftovers_only_if_provisioned():
    o = outcome({**ALL_DONE, "teardown": None})
    assert o.reason == "teardown: did not complete; resources may remain at the site"
    nothing = {"broker": {}, "provision": None, "count": None, "stage_out": None}
    o = outcome(nothing, [ev("provision", "failed", "quota exceeded")])
    assert o.reason == "provision: quota exceeded"


def test_failover_history_on_success_and_on_failure():
    tries = [ev("provision", "retry", "site alpha: quota"), ev("provision", "retry", "site b: x")]
    o = outcome(events=tries)
    assert o.status == "CREATE_COMPLETE"
    assert o.reason == "completed at beta after failover: site alpha: quota; site b: x"
    assert o.outputs["failover"] == ["site alpha: quota", "site b: x"]
    nothing = {"broker": {}, "provision": None, "count": None, "stage_out": None}
    o = outcome(nothing, [*tries, ev("provision", "failed", "site beta: down")])
    assert o.status == "CREATE_FAILED"
    assert o.reason == (
        "provision failed at every candidate site: site alpha: quota; site b: x; site beta: down"
    )
