"""End-to-end scenarios of scanning on creation: the harness sends EC2's
"EC2 AMI State Change" event when a test creates an image, the template's
rule routes it into the FIFO runs queue, and find-amis drains that queue one
batch at a time, as Lambda's poller would. No schedule and no manual request
is involved unless a test says so.

Every scenario is judged on what the emulator holds afterwards: executions,
tags, queue contents and the alerts on the topic.
"""

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from localcloud import LAUNCH_MACHINE, SELECTION, LocalCloud, SnapshotBehaviour  # noqa: E402

FINDINGS = [("CRITICAL", "CVE-2024-6387", "openssh-server"), ("HIGH", "CVE-2024-2511", "openssl")]
SUMMARIES = {"SCAN_BATCH_STARTED", "NOTHING_TO_SCAN"}
CAP_REASON = "concurrent-scan cap of 5 reached; first in line next run"


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(timeout_minutes=1, scan_mode="snapshot") as local:
        yield local


def summaries(notes):
    return [n for n in notes if n["attributes"]["event_type"] in SUMMARIES]


def test_a_tagged_ami_is_scanned_when_it_becomes_available_and_an_untagged_one_is_not(cloud):
    cloud.notifications()
    tagged = cloud.seed_ami("packer-golden", "ubuntu")
    untagged = cloud.seed_ami("scratch-build", "ubuntu", tagged=False)
    for ami in (tagged, untagged):
        cloud.expect_snapshot(ami, SnapshotBehaviour("scan", FINDINGS))
    runs_before = len(cloud.runs())
    assert cloud.executions(LAUNCH_MACHINE) == [], "nothing runs before the events"

    cloud.announce([tagged, untagged])
    runs = cloud.wait_for_runs()[runs_before:]
    assert sum(r["size"] for r in runs) == 2 and all(r["error"] is None for r in runs), runs
    (launch,) = cloud.wait_for_scans([tagged])
    assert launch["status"] == "SUCCEEDED", launch
    tags = cloud.image_tags(tagged)
    assert (tags["amiscan:status"], tags["amiscan:verdict"], tags["amiscan:critical"]) == ("COMPLETE", "FAIL", "1")
    assert cloud.launches_of(untagged) == []
    assert not any(k.startswith("amiscan:") for k in cloud.image_tags(untagged)), "the untagged AMI is untouched"

    # One run summary, naming the scan it started; a batch of only the
    # untagged AMI would have told nobody.
    (summary,) = summaries(cloud.notifications())
    body = summary["message"]
    assert [s["ami_id"] for s in body["started"]] == [tagged]
    assert body["started"][0]["scan_age_days"] is None, "never scanned before"
    skipped = {s["ami_id"]: s["reason"] for s in body["skipped"]}
    assert skipped in ({}, {untagged: "not tagged InspectorScan=true (ScanOnCreate=TAGGED); "
                                      "the weekly run scans it once tagged"}), skipped


def test_creation_and_the_weekly_run_the_same_day_scan_an_ami_once(cloud):
    ami = cloud.seed_ami("same-day", "ubuntu")
    cloud.expect_snapshot(ami, SnapshotBehaviour("scan", []))
    cloud.announce([ami])
    cloud.wait_for_runs()
    cloud.wait_for_scans([ami])
    assert cloud.image_tags(ami)["amiscan:verdict"] == "PASS"
    cloud.notifications()

    cloud.weekly_run()  # what the schedule sends, through the same queue
    runs = cloud.wait_for_runs()
    assert runs[-1]["size"] == 1 and runs[-1]["error"] is None, runs[-1]
    assert len(cloud.launches_of(ami)) == 1, "one scan of the AMI today"
    (summary,) = summaries(cloud.notifications())
    body = summary["message"]
    assert body["selection"] == f"AMIs tagged {SELECTION[0]}={SELECTION[1]}"
    assert body["counts"]["started"] == 0
    running = {s["ami_id"]: s for s in body["already_running"]}
    assert ami in running and running[ami]["scan_age_days"] == 0, running
    # Every tagged AMI of this module was scanned today: none is overdue.
    assert body["counts"]["overdue"] == 0, body["overdue"]


def test_a_burst_beyond_the_cap_starts_scans_up_to_the_cap_and_defers_the_rest(cloud):
    cloud.start_functions(MAX_CONCURRENT_SCANS="5")
    hold = threading.Event()
    try:
        ids = cloud.control("/images", {"name_prefix": "burst", "count": 200,
                                        "tags": {SELECTION[0]: SELECTION[1]}})["image_ids"]
        for ami in ids:
            cloud.expect_snapshot(ami, SnapshotBehaviour("scan", [], hold=hold))
        cloud.notifications()
        runs_before = len(cloud.runs())

        cloud.announce(ids)  # 200 AMIs available within seconds
        runs = cloud.wait_for_runs(seconds=300)[runs_before:]
        assert sum(r["size"] for r in runs) == 200, runs
        assert all(r["error"] is None and r["size"] <= 10 for r in runs), runs
        # Scans are held in progress: had two runs raced, more than five
        # would be running now.
        started = [e for ami in ids for e in cloud.launches_of(ami)]
        assert len(started) == 5 and all(e["status"] == "RUNNING" for e in started), started
        notes = summaries(cloud.notifications())
        assert sum(n["message"]["counts"]["started"] for n in notes) == 5
        deferred = [s for n in notes for s in n["message"]["skipped"]]
        assert len(deferred) == 195 and {s["reason"] for s in deferred} == {CAP_REASON}
        assert {s["ami_id"] for s in deferred} | {e["name"].rsplit("-", 1)[0] for e in started} == set(ids)

        # The next run reaches the AMIs the burst deferred, never-scanned first.
        hold.set()
        cloud.wait_for_scans([e["name"].rsplit("-", 1)[0] for e in started])
        first = {e["name"].rsplit("-", 1)[0] for e in started}
        out = cloud.find_amis({})
        nxt = {s["ami_id"] for s in out["started"]}
        assert len(nxt) == 5 and nxt <= set(ids) - first, (nxt, first)
        cloud.wait_for_scans(sorted(nxt))
    finally:
        hold.set()
        cloud.start_functions(MAX_CONCURRENT_SCANS="20")


def test_a_fresh_stack_with_no_exceptions_file_was_refused_nothing(cloud):
    """Last in this file: every scan above was a first scan on a stack with no exceptions file."""
    cloud.assert_fresh_stack_refused_nothing()
