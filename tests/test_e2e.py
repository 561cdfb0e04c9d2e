"""End-to-end scenarios: the real ASL and the real Lambdas on the local cloud.

Every scenario asserts what is left in the emulator (instances, rules, tags,
reports, messages), not only how an execution ended. Scenarios that need the
scan deadline run together in one find-amis run, so they share its minute.
"""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from localcloud import (  # noqa: E402
    LAUNCH_MACHINE,
    REPORT_MACHINE,
    ROOT,
    Behaviour,
    LocalCloud,
    template,
    template_functions,
)

CRITICAL = [("CRITICAL", "CVE-2024-6387", "openssh-server"), ("HIGH", "CVE-2024-2511", "openssl")]


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(timeout_minutes=1) as local:
        local.start_functions(SWEEP_MARGIN_MINUTES="0")
        yield local


def alerts_for(notes, ami_id):
    out = []
    for note in notes:
        message = note["message"]
        owner = message.get("ami_id") or message.get("scan", {}).get("ami_id")
        if owner == ami_id:
            out.append(note)
    return out


def events_of(notes, ami_id):
    return sorted(n["attributes"]["event_type"] for n in alerts_for(notes, ami_id))


def assert_nothing_left(cloud, ami_id):
    instances = cloud.scanner_instances_of(ami_id)
    assert instances, f"no scan instance was ever launched for {ami_id}"
    states = {i["InstanceId"]: i["State"]["Name"] for i in instances}
    assert set(states.values()) == {"terminated"}, states
    rules = [r for r in cloud.scanner_rules() if r.removeprefix("amiscan-scan-") in states]
    assert rules == [], f"rules left for {ami_id}: {rules}"


def report_inputs(cloud):
    return [cloud.execution_input(e) for e in cloud.executions(REPORT_MACHINE)]


# ---------------------------------------------------------------- smoke


def test_the_local_cloud_runs_a_lambda_task_and_delivers_an_eventbridge_event(cloud):
    """Fails first and loudly when a moto upgrade breaks a patch."""
    sfn, events = cloud.client("stepfunctions"), cloud.client("events")
    definition = {
        "StartAt": "Call",
        "States": {"Call": {"Type": "Task", "Resource": cloud.substitution("TagAmiFunctionArn"), "End": True,
                            "Catch": [{"ErrorEquals": ["InvalidInput"], "Next": "Caught"}]},
                   "Caught": {"Type": "Pass", "End": True}},
    }
    # The machine runs as report-and-cleanup's role (it may invoke tag-ami);
    # the rule delivers as a role that trusts EventBridge and may start it.
    arn = sfn.create_state_machine(name="smoke", definition=json.dumps(definition),
                                   roleArn=cloud.names["ReportAndCleanupStateMachineRole.Arn"])["stateMachineArn"]
    iam = cloud.client("iam")
    role = iam.create_role(RoleName="amiscan-smoke-delivery", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName="amiscan-smoke-delivery", PolicyName="start", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "states:StartExecution", "Resource": arn}]}))
    events.put_rule(Name="smoke", EventPattern=json.dumps({"source": ["amiscan.smoke"]}))
    events.put_targets(Rule="smoke", Targets=[{"Id": "m", "Arn": arn, "RoleArn": role,
                                               "InputTransformer": {"InputPathsMap": {"v": "$.detail.v"},
                                                                    "InputTemplate": '{"scan": {"ami_id": "<v>"}}'}}])
    out = events.put_events(Entries=[{"Source": "amiscan.smoke", "DetailType": "d", "Detail": '{"v": "x"}'}])
    assert out["FailedEntryCount"] == 0
    deadline = time.time() + 60
    while time.time() < deadline:
        executions = sfn.list_executions(stateMachineArn=arn)["executions"]
        if executions and executions[0]["status"] != "RUNNING":
            break
        time.sleep(0.5)
    assert executions[0]["status"] == "SUCCEEDED"
    history = sfn.get_execution_history(executionArn=executions[0]["executionArn"])["events"]
    failed = [e for e in history if e["type"] == "TaskFailed" or e["type"] == "LambdaFunctionFailed"]
    assert failed, "the Lambda task did not run the real function (which rejects this input)"
    assert json.loads(sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"]) == {"scan": {"ami_id": "x"}}
    events.remove_targets(Rule="smoke", Ids=["m"])
    events.delete_rule(Name="smoke")


def test_the_local_setup_uses_the_templates_names_variables_and_substitutions(cloud):
    parsed = template()
    lam = cloud.client("lambda")
    resources = parsed["Resources"]
    for logical, (binary, variables) in template_functions(parsed).items():
        configured = lam.get_function_configuration(FunctionName=binary).get("Environment", {}).get("Variables", {})
        # A variable only a hub has (`!If [IsHub, …, !Ref AWS::NoValue]`) is
        # absent from this single-account stack.
        hub_only = {name for name, value in resources[logical]["Properties"]["Environment"]["Variables"].items()
                    if isinstance(value, dict) and value.get("Fn::If", [None])[0] == "IsHub"}
        assert sorted(configured) == [v for v in variables if v not in hub_only], logical
        assert hub_only <= {"HUB_EVENT_BUS_NAME"}, hub_only
    sfn = cloud.client("stepfunctions")
    for logical, name in (("LaunchScanStateMachine", LAUNCH_MACHINE), ("ReportAndCleanupStateMachine", REPORT_MACHINE)):
        props = parsed["Resources"][logical]["Properties"]
        definition = sfn.describe_state_machine(
            stateMachineArn=f"arn:aws:states:us-east-1:123456789012:stateMachine:{name}")["definition"]
        assert "${" not in definition
        source = (ROOT / props["DefinitionUri"]).read_text()
        for key in props["DefinitionSubstitutions"]:
            source = source.replace("${" + key + "}", cloud.substitution(key))
        assert json.loads(definition) == json.loads(source)


# ---------------------------------------------------------------- one run, many fates


@pytest.fixture(scope="module")
def batch(cloud):
    """One find-amis run over AMIs with every fate that needs the deadline."""
    ec2 = cloud.client("ec2")
    amis = {
        "vulnerable": cloud.seed_ami("e2e-vulnerable", "ubuntu/images"),
        "clean": cloud.seed_ami("e2e-clean", "amzn2-ami"),
        "never": cloud.seed_ami("e2e-never", "Windows_Server-2016-English-Full-Base"),
        "unsupported": cloud.seed_ami("e2e-unsupported", "amzn2-ami"),
        "lost": cloud.seed_ami("e2e-lost-event", "amzn2-ami"),
        "deregistered": cloud.seed_ami("e2e-deregistered", "amzn2-ami"),
        "launch_fails": cloud.seed_ami("e2e-launch-fails", "amzn2-ami"),
        "export_fails": cloud.seed_ami("e2e-export-fails", "amzn2-ami"),
        "cleanup_fails": cloud.seed_ami("e2e-cleanup-fails", "amzn2-ami"),
        "status_tag_fails": cloud.seed_ami("e2e-status-tag-fails", "amzn2-ami"),
        "at_deadline": cloud.seed_ami("e2e-event-at-deadline", "amzn2-ami"),
    }
    cloud.expect(amis["vulnerable"], Behaviour("scan", CRITICAL))
    cloud.expect(amis["clean"], Behaviour("scan", []))
    cloud.expect(amis["never"], Behaviour("never", reason="UNMANAGED_EC2_INSTANCE"))
    cloud.expect(amis["unsupported"], Behaviour("never", reason="UNSUPPORTED_OS"))
    cloud.expect(amis["lost"], Behaviour("lost", [("HIGH", "CVE-2024-2511", "openssl")]))
    cloud.expect(amis["deregistered"], Behaviour(
        "scan", CRITICAL, before_event=lambda c, i: c.client("ec2").deregister_image(ImageId=i["ImageId"])))
    cloud.expect(amis["export_fails"], Behaviour("scan", CRITICAL))
    # Inspector's event comes just as the one-minute deadline passes: the
    # deadline's check and the event race for the one waiting task.
    cloud.expect(amis["at_deadline"], Behaviour("scan", CRITICAL, event_after=61))
    cloud.control("/script", {"function": "launch-instance", "match": amis["launch_fails"], "times": -1,
                              "error": {"errorType": "AmiNotUsable", "errorMessage": "scripted: launch refused"}})
    cloud.control("/script", {"function": "export-report", "match": amis["export_fails"], "times": -1,
                              "error": {"errorType": "AwsError", "errorMessage": "scripted: PutObject AccessDenied"}})
    # The scan is exported but its first cleanup fails; the deadline's
    # TIMED_OUT tag fails once.
    cloud.expect(amis["cleanup_fails"], Behaviour("scan", CRITICAL))
    cloud.control("/script", {"function": "cleanup", "match": amis["cleanup_fails"], "times": 1,
                              "error": {"errorType": "AwsError", "errorMessage": "scripted: TerminateInstances refused"}})
    cloud.expect(amis["status_tag_fails"], Behaviour("never", reason="UNMANAGED_EC2_INSTANCE"))
    cloud.control("/script", {"function": "tag-ami", "match": [amis["status_tag_fails"], "TIMED_OUT"], "times": 1,
                              "error": {"errorType": "AwsError", "errorMessage": "scripted: CreateTags refused"}})
    # An orphan of a lost execution, for the sweeper: a scanner instance and a
    # rule whose instance is gone, plus an instance that is not amiscan's.
    base = cloud.public_image("amzn2-ami")
    tag = lambda managed: [{"ResourceType": "instance", "Tags": [
        {"Key": "amiscan:managed", "Value": "true" if managed else "false"},
        {"Key": "amiscan:ami-id", "Value": "ami-00000000"}, {"Key": "amiscan:scan-id", "Value": "ami-00000000-20260101"}]}]
    orphan = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, TagSpecifications=tag(True),
                               IamInstanceProfile={"Arn": cloud.settings["INSTANCE_PROFILE"]})["Instances"][0]
    stranger = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, TagSpecifications=tag(False))["Instances"][0]
    cloud.client("events").put_rule(Name="amiscan-scan-i-0000000000000dead",
                                    EventPattern=json.dumps({"source": ["aws.inspector2"]}))
    run = cloud.find_amis({"ami_ids": list(amis.values())})
    launches, _ = cloud.wait_for_executions(len(amis), 400)
    notes = cloud.notifications()
    return {"amis": amis, "run": run, "notes": notes, "orphan": orphan["InstanceId"],
            "stranger": stranger["InstanceId"], "launches": launches}


def test_several_amis_at_once_are_scanned_reported_tagged_and_cleaned_up(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    assert {s["ami_id"] for s in batch["run"]["started"]} == set(amis.values())
    vulnerable = cloud.image_tags(amis["vulnerable"])
    assert (vulnerable["amiscan:status"], vulnerable["amiscan:verdict"], vulnerable["amiscan:critical"]) == ("COMPLETE", "FAIL", "1")
    assert cloud.image(amis["vulnerable"])["State"] == "available", "FailAction none leaves the AMI alone"
    assert "DeprecationTime" not in cloud.image(amis["vulnerable"])
    clean = cloud.image_tags(amis["clean"])
    assert (clean["amiscan:status"], clean["amiscan:verdict"], clean["amiscan:findings"]) == ("COMPLETE", "PASS", "0")
    summary, rows = cloud.report_of(amis["vulnerable"])
    assert summary["verdict"] == "FAIL" and len(rows) == 2
    assert {r["vulnerability_id"] for r in rows} == {"CVE-2024-6387", "CVE-2024-2511"}
    assert summary["report_uri"] == vulnerable["amiscan:report-uri"]
    assert cloud.report_of(amis["clean"])[0]["finding_count"] == 0
    for label in ("vulnerable", "clean"):
        assert_nothing_left(cloud, amis[label])
    assert events_of(notes, amis["vulnerable"]) == ["AMI_VULNERABLE", "SCAN_COMPLETED", "SCAN_STARTED"]
    assert events_of(notes, amis["clean"]) == ["SCAN_COMPLETED", "SCAN_STARTED"]
    vulnerable_alert = next(n for n in alerts_for(notes, amis["vulnerable"]) if n["attributes"]["event_type"] == "AMI_VULNERABLE")
    assert vulnerable_alert["attributes"]["severity"] == "CRITICAL"


def test_a_scan_inspector_never_makes_times_out_and_is_cleaned_up(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    never = cloud.image_tags(amis["never"])
    assert never["amiscan:status"] == "TIMED_OUT"
    assert "UNMANAGED_EC2_INSTANCE" in never["amiscan:reason"]
    unsupported = cloud.image_tags(amis["unsupported"])
    assert unsupported["amiscan:status"] == "NOT_SCANNABLE"
    assert "UNSUPPORTED_OS" in unsupported["amiscan:reason"]
    for label in ("never", "unsupported"):
        assert_nothing_left(cloud, amis[label])
        assert "SCAN_FAILED" in events_of(notes, amis[label])
        assert "amiscan:verdict" not in cloud.image_tags(amis[label])


def test_a_lost_event_is_exported_at_the_deadline(cloud, batch):
    amis = batch["amis"]
    tags = cloud.image_tags(amis["lost"])
    assert (tags["amiscan:status"], tags["amiscan:high"]) == ("COMPLETE", "1")
    sources = [i["inspector"].get("source") for i in report_inputs(cloud) if i["scan"]["ami_id"] == amis["lost"]]
    assert sources == ["deadline"], "launch-scan reported from check-scan's answer at the deadline, not from an event"
    assert_nothing_left(cloud, amis["lost"])


def test_an_event_at_the_deadline_leaves_one_report_one_result_tag_and_one_alert(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    ami = amis["at_deadline"]
    # Whichever came first (the deadline's check that Inspector scanned, or
    # the event) reported; the other changed nothing.
    reports = [e for e in cloud.executions(REPORT_MACHINE) if cloud.execution_input(e)["scan"]["ami_id"] == ami]
    assert len(reports) == 1, reports
    assert reports[0]["status"] == "SUCCEEDED"
    assert cloud.execution_input(reports[0])["inspector"]["source"] in ("deadline", "event")
    result_tags = [h for e in reports + [e for e in batch["launches"] if e["name"].startswith(ami)]
                   for h in cloud.history(e)
                   if h["type"] == "LambdaFunctionScheduled" and h["lambdaFunctionScheduledEventDetails"]["resource"].endswith(":tag-ami")
                   and '"COMPLETE"' in h["lambdaFunctionScheduledEventDetails"]["input"]]
    assert len(result_tags) == 1, result_tags
    assert events_of(notes, ami) == ["AMI_VULNERABLE", "SCAN_COMPLETED", "SCAN_STARTED"]
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:status"], tags["amiscan:verdict"]) == ("COMPLETE", "FAIL")
    assert_nothing_left(cloud, ami)


def test_an_ami_deregistered_during_its_scan_leaves_nothing_behind_and_alerts(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    assert cloud.image(amis["deregistered"]) is None
    assert_nothing_left(cloud, amis["deregistered"])
    failed = [n for n in alerts_for(notes, amis["deregistered"]) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    # The AMI goes while the scan runs: whichever machine next tags it (launch
    # marking it in progress, or report recording the result) fails and alerts.
    tagging_states = ("Mark AMI In Progress", "Tag AMI With Result")
    assert any(state in n["subject"] for n in failed for state in tagging_states), failed
    assert all(n["message"]["error"]["Error"] == "NotFound" for n in failed if "error" in n["message"]), failed


def test_a_launch_that_fails_tags_failed_alerts_and_leaves_nothing(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    tags = cloud.image_tags(amis["launch_fails"])
    assert tags["amiscan:status"] == "FAILED"
    assert "scripted: launch refused" in tags["amiscan:reason"]
    assert cloud.scanner_instances_of(amis["launch_fails"]) == []
    failed = [n for n in alerts_for(notes, amis["launch_fails"]) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    assert len(failed) == 1
    assert "Launch Scan Instance" in failed[0]["subject"]
    assert failed[0]["message"]["error"]["Error"] == "AmiNotUsable"
    execution = next(e for e in batch["launches"] if e["name"].startswith(amis["launch_fails"]))
    assert execution["status"] == "FAILED"


def test_an_export_that_fails_still_cleans_up_and_alerts(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    tags = cloud.image_tags(amis["export_fails"])
    assert tags["amiscan:status"] == "FAILED"
    assert "scripted: PutObject AccessDenied" in tags["amiscan:reason"]
    assert_nothing_left(cloud, amis["export_fails"])
    failed = [n for n in alerts_for(notes, amis["export_fails"]) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    assert failed and "Export Findings" in failed[0]["subject"]
    assert cloud.report_of(amis["export_fails"])[0] is None


def test_a_cleanup_that_fails_after_the_export_still_reports_complete_and_alerts(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    tags = cloud.image_tags(amis["cleanup_fails"])
    assert (tags["amiscan:status"], tags["amiscan:verdict"]) == ("COMPLETE", "FAIL"), tags
    assert "amiscan:reason" not in tags
    alerts = alerts_for(notes, amis["cleanup_fails"])
    # The verdict's alert, with the cleanup failure in it; no SCAN_FAILED.
    assert sorted(n["attributes"]["event_type"] for n in alerts) == ["AMI_VULNERABLE", "SCAN_STARTED"], alerts
    (cleanup_alert,) = [n for n in alerts if "cleanup failed" in n["subject"]]
    assert cleanup_alert["attributes"]["event_type"] == "AMI_VULNERABLE"
    assert cleanup_alert["message"]["cleanup_error"]["Error"] == "AwsError"
    assert cleanup_alert["message"]["summary"]["verdict"] == "FAIL"
    (report,) = [e for e in cloud.executions(REPORT_MACHINE) if amis["cleanup_fails"] in json.dumps(cloud.execution_input(e))]
    assert report["status"] == "FAILED"
    # Left running for the sweep; a second cleanup (the sweep's, or this one)
    # removes it.
    (instance,) = cloud.scanner_instances_of(amis["cleanup_fails"])
    assert instance["State"]["Name"] == "running"
    out = cloud.client("lambda").invoke(FunctionName="cleanup", Payload=json.dumps(
        {"scan_id": cloud.execution_input(report)["scan"]["scan_id"]}).encode())
    assert "FunctionError" not in out, out["Payload"].read()
    assert_nothing_left(cloud, amis["cleanup_fails"])


def test_a_deadline_status_that_cannot_be_tagged_falls_back_to_failed(cloud, batch):
    amis, notes = batch["amis"], batch["notes"]
    tags = cloud.image_tags(amis["status_tag_fails"])
    assert tags["amiscan:status"] == "FAILED", tags
    assert "scripted: CreateTags refused" in tags["amiscan:reason"]
    assert_nothing_left(cloud, amis["status_tag_fails"])
    failed = [n for n in alerts_for(notes, amis["status_tag_fails"]) if n["attributes"]["event_type"] == "SCAN_FAILED"]
    assert any("Tag AMI Not Scanned" in n["subject"] for n in failed), failed


def test_a_repeated_trigger_starts_no_second_scan(cloud, batch):
    before = len(cloud.executions(LAUNCH_MACHINE))
    again = cloud.find_amis({"ami_ids": list(batch["amis"].values())})
    assert again["started"] == []
    gone = batch["amis"]["deregistered"]
    assert {s["ami_id"] for s in again["already_running"]} == set(batch["amis"].values()) - {gone}
    assert {s["ami_id"]: s["reason"] for s in again["skipped"]} == {gone: "not found"}
    assert len(cloud.executions(LAUNCH_MACHINE)) == before


def test_the_sweeper_removes_an_orphaned_instance_and_rule(cloud, batch):
    lam = cloud.client("lambda")
    event = (ROOT / "events/cleanup/sweep.json").read_bytes()
    out = lam.invoke(FunctionName="cleanup", Payload=event)
    report = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, report
    assert batch["orphan"] in report["terminated"]
    assert "amiscan-scan-i-0000000000000dead" in report["rules_deleted"]
    ec2 = cloud.client("ec2")
    state = lambda i: ec2.describe_instances(InstanceIds=[i])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state(batch["orphan"]) == "terminated"
    assert state(batch["stranger"]) == "running", "the sweeper touched an instance that is not amiscan's"
    assert cloud.scanner_rules() == []


# ---------------------------------------------------------------- FAIL actions and capacity


@pytest.mark.parametrize("action", ["deprecate", "disable"])
def test_a_fail_verdict_acts_on_the_ami_as_configured(cloud, batch, action):
    cloud.start_functions(FAIL_ACTION=action)
    cloud.control("/no-capacity", {"instance_types": ["t3.small"]})
    try:
        ami = cloud.seed_ami(f"e2e-fail-{action}", "ubuntu/images")
        cloud.expect(ami, Behaviour("scan", CRITICAL))
        before = len(cloud.executions(LAUNCH_MACHINE))
        run = cloud.find_amis({"ami_ids": [ami]})
        assert len(run["started"]) == 1
        cloud.wait_for_executions(before + 1, 300)
    finally:
        cloud.control("/reset", {})
        cloud.start_functions(FAIL_ACTION="none")
    tags = cloud.image_tags(ami)
    assert tags["amiscan:verdict"] == "FAIL"
    image = cloud.image(ami)
    if action == "deprecate":
        assert image.get("DeprecationTime"), image
        assert image["State"] == "available"
    else:
        assert image["State"] == "disabled"
    # t3.small had no capacity: the launch fell back to the next type.
    instances = cloud.scanner_instances_of(ami)
    assert [i["InstanceType"] for i in instances] == ["t3a.small"]
    assert_nothing_left(cloud, ami)


def test_a_function_with_missing_settings_stops_at_start_up_naming_them(cloud):
    """The workspace's debug binaries, started without their settings."""
    import os
    import subprocess

    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    binary = target / "debug" / "launch-instance"
    assert binary.exists(), binary
    env = {"PATH": os.environ["PATH"], "SUBNET_ID": "vpc-123", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}
    result = subprocess.run([str(binary)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    for text in ("INSTANCE_TYPES is not set", 'SUBNET_ID="vpc-123" is malformed', "SECURITY_GROUP_ID is not set",
                 "INSTANCE_PROFILE is not set", "SCAN_TIMEOUT_MINUTES is not set"):
        assert text in result.stderr + result.stdout, result.stderr


def test_a_fresh_stack_with_no_exceptions_file_was_refused_nothing(cloud):
    """Last in this file: every scan above was a first scan on a stack with no exceptions file."""
    cloud.assert_fresh_stack_refused_nothing()
