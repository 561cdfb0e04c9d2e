"""End-to-end scenarios of snapshot mode: the real ASL and the real Lambdas on
the local cloud, with the launcher answering Inspector's on-demand scan API and
the harness delivering its events through EventBridge and the findings queue,
faults included (duplicates, reordering, losses).

Every scenario is judged on what the emulator holds afterwards: tags, report
objects, staged objects, scan records, instances, rules, queue contents.
"""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from localcloud import (  # noqa: E402
    BUCKET,
    LAUNCH_MACHINE,
    REPORT_MACHINE,
    Behaviour,
    LocalCloud,
    SnapshotBehaviour,
    ondemand_finding_event,
)

FINDINGS = [("CRITICAL", "CVE-2024-6387", "openssh-server"), ("HIGH", "CVE-2024-2511", "openssl"),
            ("MEDIUM", "CVE-2023-5678", "zlib")]


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(timeout_minutes=1, scan_mode="auto") as local:
        yield local


def alerts_for(notes, ami_id):
    return [n for n in notes if (n["message"].get("ami_id") or n["message"].get("scan", {}).get("ami_id")) == ami_id]


def events_of(notes, ami_id):
    return sorted(n["attributes"]["event_type"] for n in alerts_for(notes, ami_id))


def staged(cloud, inspector_scan_id=None):
    prefix = "staging/ondemand/" + (f"{inspector_scan_id}/" if inspector_scan_id else "")
    pages = cloud.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def states_entered(cloud, execution):
    return [e["stateEnteredEventDetails"]["name"] for e in cloud.history(execution) if "stateEnteredEventDetails" in e]


def launch_of(cloud, ami_id):
    return next(e for e in cloud.executions(LAUNCH_MACHINE) if e["name"].startswith(ami_id))


def report_children_of(cloud, ami_id):
    """launch-scan's child reports of the AMI's snapshot scan, one per
    on-demand attempt (`<scan id>-report-<attempt>`), in attempt order."""
    children = [e for e in cloud.executions(REPORT_MACHINE)
                if e["name"].startswith(ami_id) and e["name"].rsplit("-", 1)[-1].isdigit()]
    return sorted(children, key=lambda e: int(e["name"].rsplit("-", 1)[-1]))


def report_child_of(cloud, ami_id):
    """The child report of the AMI's last on-demand attempt."""
    return report_children_of(cloud, ami_id)[-1]


def queue_depth(cloud, url):
    attrs = cloud.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def assert_scanned_by_snapshot(cloud, ami_id):
    assert cloud.scanner_instances_of(ami_id) == [], f"an instance was launched for {ami_id}"
    assert cloud.image_tags(ami_id)["amiscan:scan-mode"] == "snapshot"
    summary, _ = cloud.report_of(ami_id)
    assert staged(cloud, summary["inspector_scan_id"]) == [], "the staged findings are deleted after the report"


# ---------------------------------------------------------------- one run, auto mode


@pytest.fixture(scope="module")
def auto(cloud):
    """One find-amis run in auto mode over one AMI per scenario, so the
    scenarios that need the deadline share its minute."""
    amis = {label: cloud.seed_ami(f"snapshot-{label}", "ubuntu") for label in (
        "shuffled", "late", "lost_completion", "lost_finding", "lost_once", "clean", "unsupported", "conflict",
        "deregistered", "internal_error", "never", "mark_fails")}
    cloud.expect_snapshot(amis["shuffled"], SnapshotBehaviour(findings=FINDINGS * 2 + FINDINGS[:1],
                                                              duplicate=True, shuffle=True))
    cloud.expect_snapshot(amis["late"], SnapshotBehaviour(findings=FINDINGS, findings_after_completion=True))
    cloud.expect_snapshot(amis["lost_completion"], SnapshotBehaviour(findings=FINDINGS[1:], lose_completion=True))
    cloud.expect_snapshot(amis["lost_finding"], SnapshotBehaviour(findings=FINDINGS, lose_findings=1))
    # EventBridge loses the HIGH's event of the first scan only.
    cloud.expect_snapshot(amis["lost_once"], SnapshotBehaviour(findings=FINDINGS[1:], lose_findings=1, lossy_scans=1))
    cloud.expect_snapshot(amis["clean"], SnapshotBehaviour(findings=[]))
    cloud.expect_snapshot(amis["unsupported"], SnapshotBehaviour("fail", reason="UNSUPPORTED_OS"))
    cloud.expect(amis["unsupported"], Behaviour("scan", findings=FINDINGS[1:2]))
    cloud.expect_snapshot(amis["conflict"], SnapshotBehaviour(findings=FINDINGS[2:]))
    cloud.expect_snapshot(amis["deregistered"], SnapshotBehaviour("terminated"))
    cloud.expect_snapshot(amis["internal_error"], SnapshotBehaviour(findings=FINDINGS[:1], first="INTERNAL_ERROR"))
    cloud.expect_snapshot(amis["never"], SnapshotBehaviour("never"))
    # Inspector's scan starts, then marking the AMI fails: the failure path
    # must discard what the attempt staged.
    cloud.expect_snapshot(amis["mark_fails"], SnapshotBehaviour("never"))
    cloud.control("/script", {"function": "tag-ami", "match": [amis["mark_fails"], "IN_PROGRESS"], "times": 1,
                              "error": {"errorType": "AwsError", "errorMessage": "scripted: CreateTags refused"}})
    # Someone started a scan of this AMI in the EC2 console a moment ago.
    person = cloud.client("inspector2").start_on_demand_scan(resourceId=amis["conflict"], resourceType="AMI")["scanId"]
    run = cloud.find_amis({"ami_ids": list(amis.values())})
    launches, _ = cloud.wait_for_executions(len(amis), 400)
    return {"amis": amis, "run": run, "launches": launches, "notes": cloud.notifications(), "person": person}


def test_every_snapshot_execution_ends_and_the_stand_in_had_no_error(cloud, auto):
    failing = launch_of(cloud, auto["amis"]["mark_fails"])["executionArn"]
    assert {e["status"] for e in auto["launches"] if e["executionArn"] != failing} == {"SUCCEEDED"}, auto["launches"]
    assert cloud.stand_in_errors == []


def test_duplicated_and_shuffled_finding_events_give_each_finding_once(cloud, auto):
    ami = auto["amis"]["shuffled"]
    summary, rows = cloud.report_of(ami)
    assert len(rows) == 7 and len({r["finding_arn"] for r in rows}) == 7
    assert (summary["verdict"], summary["finding_count"], summary["findings_expected"]) == ("FAIL", 7, 7)
    assert (summary["scan_mode"], summary["instance_id"]) == ("snapshot", None)
    assert {r["scan_mode"] for r in rows} == {"snapshot"}
    assert {r["inspector_scan_id"] for r in rows} == {summary["inspector_scan_id"]}
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:status"], tags["amiscan:verdict"], tags["amiscan:critical"], tags["amiscan:findings"]) == (
        "COMPLETE", "FAIL", "3", "7")
    assert events_of(auto["notes"], ami) == ["AMI_VULNERABLE", "SCAN_COMPLETED", "SCAN_STARTED"]
    assert_scanned_by_snapshot(cloud, ami)


def test_findings_that_arrive_after_the_completion_event_are_waited_for(cloud, auto):
    ami = auto["amis"]["late"]
    summary, rows = cloud.report_of(ami)
    assert (summary["verdict"], summary["finding_count"], summary["findings_expected"]) == ("FAIL", 3, 3)
    assert {r["vulnerability_id"] for r in rows} == {f[1] for f in FINDINGS}
    assert "Stop Waiting For Late Findings" not in states_entered(cloud, report_child_of(cloud, ami))
    assert_scanned_by_snapshot(cloud, ami)


def test_a_lost_completion_event_is_caught_at_the_deadline_and_never_passes(cloud, auto):
    ami = auto["amis"]["lost_completion"]
    summary, rows = cloud.report_of(ami)
    assert len(rows) == 2, "what did arrive is reported"
    assert summary["verdict"] == "INCOMPLETE" and summary["findings_expected"] is None
    assert "Check Snapshot Scan" in states_entered(cloud, launch_of(cloud, ami))
    assert_scanned_twice(cloud, ami, summary)
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:status"], tags["amiscan:verdict"]) == ("COMPLETE", "INCOMPLETE")
    assert "SCAN_INCOMPLETE" in events_of(auto["notes"], ami)
    assert_scanned_by_snapshot(cloud, ami)


def assert_scanned_twice(cloud, ami, summary):
    """The first on-demand scan lacked findings: its child report wrote
    nothing and handed back, and the summary is the fresh scan's."""
    scans = sorted(cloud.ondemand_scans(ami), key=lambda s: s["startedAt"])
    assert [s["scanStatus"] for s in scans] == ["SUCCESSFUL", "SUCCESSFUL"], scans
    assert summary["inspector_scan_id"] == scans[1]["scanId"]
    first, second = report_children_of(cloud, ami)
    assert "Hand Back For A Fresh Scan" in states_entered(cloud, first)
    assert "Tag AMI With Result" not in states_entered(cloud, first), "the first attempt recorded nothing"
    assert "Tag AMI With Result" in states_entered(cloud, second)
    assert "Scan Once More For The Missing Findings" in states_entered(cloud, launch_of(cloud, ami))
    assert staged(cloud, scans[0]["scanId"]) == [], "the first attempt's staged findings are deleted"


def test_a_lost_finding_event_makes_the_scan_incomplete_with_the_numbers(cloud, auto):
    ami = auto["amis"]["lost_finding"]
    summary, rows = cloud.report_of(ami)
    assert (summary["verdict"], summary["finding_count"], summary["findings_expected"]) == ("INCOMPLETE", 2, 3)
    assert len(rows) == 2
    assert "second on-demand scan" in summary["reason"], summary["reason"]
    assert_scanned_twice(cloud, ami, summary)
    tags = cloud.image_tags(ami)
    assert tags["amiscan:verdict"] == "INCOMPLETE" and "2 of 3" in tags["amiscan:reason"], tags
    incomplete = [n for n in alerts_for(auto["notes"], ami) if n["attributes"]["event_type"] == "SCAN_INCOMPLETE"]
    assert len(incomplete) == 1 and "2 findings arrived, 3 expected" in incomplete[0]["subject"]
    assert "AMI_VULNERABLE" not in events_of(auto["notes"], ami) or summary["critical"] > 0
    assert_scanned_by_snapshot(cloud, ami)


def test_a_finding_event_lost_once_costs_one_fresh_scan_not_a_blocked_ami(cloud, auto):
    ami = auto["amis"]["lost_once"]
    summary, rows = cloud.report_of(ami)
    assert (summary["verdict"], summary["finding_count"], summary["findings_expected"]) == ("PASS", 2, 2)
    assert (summary["gap"], summary["reason"]) == (None, None)
    assert sorted(r["vulnerability_id"] for r in rows) == sorted(f[1] for f in FINDINGS[1:])
    assert_scanned_twice(cloud, ami, summary)
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:status"], tags["amiscan:verdict"]) == ("COMPLETE", "PASS"), tags
    events = events_of(auto["notes"], ami)
    assert "SCAN_INCOMPLETE" not in events and events.count("SCAN_COMPLETED") == 1, events
    # One summary: the first attempt wrote no report, no summary and no pointer.
    pages = cloud.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="scans/")
    summaries = [o["Key"] for page in pages for o in page.get("Contents", []) if f"/{ami}-" in o["Key"]]
    assert len(summaries) == 1, summaries
    assert_scanned_by_snapshot(cloud, ami)


def test_a_clean_snapshot_scan_passes(cloud, auto):
    ami = auto["amis"]["clean"]
    summary, rows = cloud.report_of(ami)
    assert (summary["verdict"], summary["finding_count"], summary["findings_expected"], rows) == ("PASS", 0, 0, [])
    assert events_of(auto["notes"], ami) == ["SCAN_COMPLETED", "SCAN_STARTED"]
    assert_scanned_by_snapshot(cloud, ami)


def test_unsupported_os_in_auto_falls_back_to_an_instance_scan_in_the_same_execution(cloud, auto):
    ami = auto["amis"]["unsupported"]
    summary, rows = cloud.report_of(ami)
    assert (summary["scan_mode"], summary["verdict"], len(rows)) == ("instance", "PASS", 1)
    assert cloud.image_tags(ami)["amiscan:scan-mode"] == "instance"
    [scan] = cloud.ondemand_scans(ami)
    assert (scan["scanStatus"], scan["scanStatusReason"]) == ("FAILED", "UNSUPPORTED_OS")
    entered = states_entered(cloud, launch_of(cloud, ami))
    assert entered.index("Start Snapshot Scan") < entered.index("Fall Back To Instance Scan") < entered.index(
        "Launch Scan Instance")
    instances = cloud.scanner_instances_of(ami)
    assert len(instances) == 1 and instances[0]["State"]["Name"] == "terminated"
    assert [r for r in cloud.scanner_rules() if instances[0]["InstanceId"] in r] == []


def test_a_scan_already_running_is_attached_to_not_started_again(cloud, auto):
    ami = auto["amis"]["conflict"]
    [scan] = cloud.ondemand_scans(ami)
    assert scan["scanId"] == auto["person"], "no second scan was started"
    summary, rows = cloud.report_of(ami)
    assert (summary["inspector_scan_id"], summary["verdict"], len(rows)) == (auto["person"], "PASS", 1)
    assert_scanned_by_snapshot(cloud, ami)


def test_an_ami_deregistered_mid_scan_ends_cleanly_with_an_alert(cloud, auto):
    ami = auto["amis"]["deregistered"]
    assert cloud.image(ami) is None
    assert cloud.scanner_instances_of(ami) == []
    failed = [n for n in alerts_for(auto["notes"], ami) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    assert len(failed) == 1 and "deregistered" in failed[0]["subject"], failed
    [scan] = cloud.ondemand_scans(ami)
    assert (scan["scanStatus"], scan["scanStatusReason"]) == ("FAILED", "RESOURCE_TERMINATED")
    assert cloud.report_of(ami)[0] is None, "no report for a scan that never ended"
    # No finding was staged; the scan's own records expire with the staging lifecycle rule.
    assert not [k for k in staged(cloud, scan["scanId"]) if "/findings/" in k]


def test_an_internal_error_is_retried_once_with_a_new_scan(cloud, auto):
    ami = auto["amis"]["internal_error"]
    scans = sorted(cloud.ondemand_scans(ami), key=lambda s: s["startedAt"])
    assert [(s["scanStatus"], s.get("scanStatusReason")) for s in scans] == [
        ("FAILED", "INTERNAL_ERROR"), ("SUCCESSFUL", None)]
    summary, rows = cloud.report_of(ami)
    assert (summary["inspector_scan_id"], summary["verdict"], len(rows)) == (scans[1]["scanId"], "FAIL", 1)
    assert_scanned_by_snapshot(cloud, ami)


def test_a_snapshot_scan_still_running_at_the_deadline_is_timed_out_with_inspectors_status(cloud, auto):
    ami = auto["amis"]["never"]
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:status"], tags["amiscan:scan-mode"]) == ("TIMED_OUT", "snapshot")
    assert "was IN_PROGRESS at the deadline" in tags["amiscan:reason"], tags
    assert "amiscan:verdict" not in tags and cloud.scanner_instances_of(ami) == []
    (alert,) = [n for n in alerts_for(auto["notes"], ami) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    assert alert["attributes"]["severity"] == "WARNING" and alert["subject"].endswith("was not scanned (TIMED_OUT)")
    entered = states_entered(cloud, launch_of(cloud, ami))
    assert entered.index("Check Snapshot Scan") < entered.index("Discard Staged Records") < entered.index(
        "Tag AMI Not Scanned"), entered


def test_a_failure_after_the_snapshot_scan_started_discards_its_staging_tags_failed_and_alerts(cloud, auto):
    ami = auto["amis"]["mark_fails"]
    execution = launch_of(cloud, ami)
    assert execution["status"] == "FAILED"
    tags = cloud.image_tags(ami)
    assert tags["amiscan:status"] == "FAILED" and "scripted: CreateTags refused" in tags["amiscan:reason"], tags
    entered = states_entered(cloud, execution)
    assert entered.index("Did The Scan Launch") < entered.index("Discard Staged Records") < entered.index(
        "Tag AMI Failed"), entered
    (alert,) = [n for n in alerts_for(auto["notes"], ami) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    assert alert["attributes"]["severity"] == "ERROR"
    assert alert["subject"] == "amiscan: a scan failed in Mark AMI In Progress"


def test_no_scan_leaves_staged_records_after_it_ends(cloud, auto):
    """The report deletes what its scan staged; start-scan deletes what an
    attempt without a report staged (the fall-back to an instance scan, a new
    start after INTERNAL_ERROR, an AMI that went away, a timeout)."""
    left = {}
    for key in staged(cloud):
        scan_id, rest = key.removeprefix("staging/ondemand/").split("/", 1)
        left.setdefault(scan_id, []).append(rest)
    scans = {s["scanId"]: s for s in cloud.ondemand_scans()}
    detail = {k: (scans.get(k, {}).get("resourceId"), scans.get(k, {}).get("scanStatusReason"), v) for k, v in left.items()}
    assert left == {}, detail
    ended_without_report = {s.get("scanStatusReason") for s in scans.values() if s["scanStatus"] == "FAILED"}
    assert {"UNSUPPORTED_OS", "INTERNAL_ERROR", "RESOURCE_TERMINATED"} <= ended_without_report, "the run had each such ending"
    assert "IN_PROGRESS" in {s["scanStatus"] for s in scans.values()}, "and a scan still running at its deadline"


# ---------------------------------------------------------------- the collector alone


def sender(cloud):
    """SQS as the one principal besides amiscan's rules that the findings
    queue's policy lets send (launch-scan's role, which registers waiters):
    a malformed body can only come from there."""
    role = cloud.names["LaunchScanStateMachineRole.Arn"]
    return cloud.client("sqs", cloud.session(role, "test-sender"))


def test_a_malformed_and_a_foreign_event_change_nothing(cloud, auto):
    sqs, before = sender(cloud), staged(cloud)
    foreign = ondemand_finding_event(0, "00000000-0000-4000-8000-000000000000", "ami-0123456789abcdef0", *FINDINGS[0])
    cloud.put_events([foreign])
    sqs.send_message(QueueUrl=cloud.findings_queue_url, MessageBody="{not json")
    sqs.send_message(QueueUrl=cloud.findings_queue_url, MessageBody=json.dumps({"detail-type": "Something Else",
                                                                                 "detail": {}}))
    deadline = time.time() + 60
    while queue_depth(cloud, cloud.findings_queue_url) and time.time() < deadline:
        time.sleep(1)
    assert queue_depth(cloud, cloud.findings_queue_url) == 0, "the collector consumed all three"
    assert queue_depth(cloud, cloud.findings_dlq_url) == 0, "nothing a retry cannot fix is redelivered"
    assert staged(cloud) == before, "nothing was stored"


def test_a_batch_the_collector_keeps_failing_is_redriven_to_the_dead_letter_queue(cloud, auto):
    cloud.control("/script", {"function": "collect-findings", "match": "poison-0042", "times": -1,
                              "error": {"errorType": "Transient", "errorMessage": "S3 is down"}})
    sqs = cloud.client("sqs")
    # Five redeliveries in a minute: the message is visible again 8 s after
    # each failed batch (the batching window is 5 s).
    sqs.set_queue_attributes(QueueUrl=cloud.findings_queue_url, Attributes={"VisibilityTimeout": "8"})
    try:
        sender(cloud).send_message(QueueUrl=cloud.findings_queue_url, MessageBody=json.dumps({"poison-0042": 1}))
        deadline = time.time() + 120
        while queue_depth(cloud, cloud.findings_dlq_url) == 0 and time.time() < deadline:
            time.sleep(1)
        [message] = cloud.client("sqs").receive_message(QueueUrl=cloud.findings_dlq_url,
                                                         AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert "poison-0042" in message["Body"]
        attempts = [b for b in cloud.control("/batches", {})["batches"] if b["error"] and "S3 is down" in b["error"]]
        assert len(attempts) == 5, "delivered the template's maxReceiveCount times, then redriven"
        assert queue_depth(cloud, cloud.findings_queue_url) == 0
    finally:
        cloud.control("/reset", {})
        sqs.set_queue_attributes(QueueUrl=cloud.findings_queue_url,
                                 Attributes={"VisibilityTimeout": str(cloud.FINDINGS_VISIBILITY_SECONDS)})


# ---------------------------------------------------------------- snapshot mode, at scale


@pytest.fixture(scope="module")
def snapshot_mode(cloud, auto):
    """The same stack with ScanMode=snapshot: 50 AMIs at once, one of them
    unreadable from its snapshots, and one with 2,000 findings."""
    # A deadline that 2,000 events through one emulator process cannot miss.
    cloud.start_functions(SCAN_MODE="snapshot", MAX_CONCURRENT_SCANS="60", SCAN_TIMEOUT_MINUTES="15")
    ec2 = cloud.client("ec2")
    instances_before = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    rules_before = {r["Name"] for r in cloud.client("events").list_rules()["Rules"]}
    many = cloud.control("/images", {"count": 48, "name_prefix": "snapshot-many",
                                     "tags": {"InspectorScan": "true"}})["image_ids"]
    big = cloud.seed_ami("snapshot-big", "ubuntu")
    unsupported = cloud.seed_ami("snapshot-unsupported", "amzn")
    instances_before |= {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    for n, ami in enumerate(many):
        cloud.expect_snapshot(ami, SnapshotBehaviour(findings=FINDINGS[n % 3:]))
    big_findings = [(("CRITICAL", "HIGH", "MEDIUM", "LOW")[n % 4], f"CVE-2026-{n:05d}", f"pkg-{n}") for n in range(2000)]
    cloud.expect_snapshot(big, SnapshotBehaviour(findings=big_findings))
    cloud.expect_snapshot(unsupported, SnapshotBehaviour("fail", reason="UNSUPPORTED_OS"))
    cloud.expect(unsupported, Behaviour("scan", findings=FINDINGS))  # would it launch, it would find these
    batches_before = len(cloud.control("/batches", {})["batches"])
    amis = many + [big, unsupported]
    run = cloud.find_amis({"ami_ids": amis})
    cloud.wait_for_executions(len(auto["amis"]) + len(amis), 900)
    return {"many": many, "big": big, "unsupported": unsupported, "run": run, "notes": cloud.notifications(),
            "instances_before": instances_before, "rules_before": rules_before,
            "batches": cloud.control("/batches", {})["batches"][batches_before:]}


def test_fifty_amis_at_once_are_all_reported_and_tagged(cloud, snapshot_mode):
    assert len(snapshot_mode["run"]["started"]) == 50 and snapshot_mode["run"]["skipped"] == []
    for n, ami in enumerate(snapshot_mode["many"]):
        summary, rows = cloud.report_of(ami)
        expected = len(FINDINGS[n % 3:])
        assert (summary["finding_count"], summary["findings_expected"], len(rows)) == (expected, expected, expected)
        assert cloud.image_tags(ami)["amiscan:status"] == "COMPLETE"
    reported = {cloud.report_of(ami)[0]["inspector_scan_id"] for ami in snapshot_mode["many"]}
    assert [k for k in staged(cloud) if k.split("/")[2] in reported] == [], "every staged finding was deleted"


def test_two_thousand_findings_for_one_ami_arrive_once_each(cloud, snapshot_mode):
    summary, rows = cloud.report_of(snapshot_mode["big"])
    assert (summary["finding_count"], summary["findings_expected"], summary["verdict"]) == (2000, 2000, "FAIL")
    assert len({r["finding_arn"] for r in rows}) == 2000
    assert (summary["critical"], summary["high"], summary["medium"], summary["low"]) == (500, 500, 500, 500)
    sizes = [b["size"] for b in snapshot_mode["batches"] if b["function"] == "collect-findings"]
    assert sum(sizes) >= 2000 and max(sizes) <= 200, "batches of at most the template's BatchSize"


def test_unsupported_os_in_snapshot_mode_is_not_scannable_and_launches_nothing(cloud, snapshot_mode):
    ami = snapshot_mode["unsupported"]
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:status"], tags["amiscan:scan-mode"]) == ("NOT_SCANNABLE", "snapshot")
    assert "UNSUPPORTED_OS" in tags["amiscan:reason"]
    assert "amiscan:verdict" not in tags
    assert "SCAN_FAILED" in events_of(snapshot_mode["notes"], ami)


def test_snapshot_mode_launches_no_instance_uses_no_security_group_and_creates_no_rule(cloud, snapshot_mode):
    ec2 = cloud.client("ec2")
    instances = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert instances == snapshot_mode["instances_before"]
    group = cloud.names["ScannerSecurityGroup"]  # the stack's group, unset in the functions in snapshot mode
    assert ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group]}])["NetworkInterfaces"] == []
    assert {r["Name"] for r in cloud.client("events").list_rules()["Rules"]} == snapshot_mode["rules_before"]
    for execution in cloud.executions(LAUNCH_MACHINE):
        if any(execution["name"].startswith(ami) for ami in snapshot_mode["many"] + [snapshot_mode["unsupported"]]):
            entered = states_entered(cloud, execution)
            assert "Launch Scan Instance" not in entered and "Wait For Instance Scan" not in entered, entered


def test_a_fresh_stack_with_no_exceptions_file_was_refused_nothing(cloud):
    """Last in this file: every scan above was a first scan on a stack with no exceptions file."""
    cloud.assert_fresh_stack_refused_nothing()
