"""What the strict local cloud refuses, as AWS would: each function's calls
are authorized against its own role from the template, so removing the
statement that grants a call (a stack update from a changed copy of the
template) makes the function's call fail with the service's denial, naming
the action; calls beyond a grant are refused; and S3 answers a missing key
403 or 404 depending on s3:ListBucket.
"""

import copy
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))
import stack  # noqa: E402
from localcloud import ACCOUNT, BUCKET, REGION, LocalCloud  # noqa: E402

EVENTS = ROOT / "events"


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(timeout_minutes=1, scan_mode="auto") as local:
        yield local


def event(path, **changes):
    """A sample event of events/ with some fields changed (`scan` nested too)."""
    body = json.loads((EVENTS / path).read_text())
    for key, value in changes.items():
        target = body["scan"] if "scan" in body and key in body["scan"] else body
        target[key] = value
    return body


def statement_matches(statement, sid, action):
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    return statement.get("Sid") == sid if sid else action in actions


def without(role, sid=None, action=None):
    """A copy of template.yaml whose `role` lacks the one statement with this
    Sid or granting this action; (copy, the actions that statement granted)."""
    parsed = copy.deepcopy(stack.template())
    removed = []
    for policy in parsed["Resources"][role]["Properties"]["Policies"]:
        if "Statement" not in policy["PolicyDocument"]:
            continue  # a document written as text (Fn::Sub): not one of these cases
        kept = []
        for statement in policy["PolicyDocument"]["Statement"]:
            inner = statement["Fn::If"][1] if "Fn::If" in statement else statement
            if statement_matches(inner, sid, action):
                removed.append(inner)
            else:
                kept.append(statement)
        policy["PolicyDocument"]["Statement"] = kept
    assert len(removed) == 1, (role, sid, action, removed)
    granted = removed[0]["Action"]
    return parsed, set(granted if isinstance(granted, list) else [granted])


@contextmanager
def revoked(cloud, role, sid=None, action=None):
    parsed, actions = without(role, sid, action)
    cloud.update_roles(parsed)
    try:
        yield actions
    finally:
        cloud.update_roles(None)


def role_arn(cloud, logical):
    return cloud.names[f"{logical}.Arn"]


def as_role(cloud, logical, service):
    """A client of `service` acting as one of the stack's roles."""
    return cloud.client(service, cloud.session(role_arn(cloud, logical), f"test-{logical}"))


def denials_of(cloud, before, logical):
    role = cloud.names[logical]
    return [d for d in cloud.denials()[before:] if f"assumed-role/{role}/" in d["caller"]]


def scanner_instance(cloud, ami, profile=True, scan_id=None):
    """An instance tagged as amiscan's scanner (of one scan, given its id),
    with or without its profile."""
    extra = {"IamInstanceProfile": {"Arn": cloud.names["InstanceProfile.Arn"]}} if profile else {}
    tags = [{"Key": "amiscan:managed", "Value": "true"}, {"Key": "amiscan:ami-id", "Value": ami}]
    if scan_id:
        tags.append({"Key": "amiscan:scan-id", "Value": scan_id})
    return cloud.client("ec2").run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}], **extra)["Instances"][0]["InstanceId"]


# (function, its role's logical id, the statement removed (Sid or an action
# it grants), the event the function is invoked with (AMI and instance
# filled in), the service's denial code)
CASES = [
    ("find-amis", "FindAmisFunctionRole", dict(action="ec2:DescribeImages"),
     lambda ami, instance: {"ami_ids": [ami]}, "UnauthorizedOperation"),
    ("launch-instance", "LaunchInstanceFunctionRole", dict(sid="LaunchOnlyTaggedImdsv2InstancesWithTheScannerProfile"),
     lambda ami, instance: event("launch-instance/scan.json", ami_id=ami, scan_id=f"{ami}-20261206"),
     "UnauthorizedOperation"),
    ("create-scan-rule", "CreateScanRuleFunctionRole", dict(sid="OnlyScannerTaggedRules"),
     lambda ami, instance: event("create-scan-rule/request.json", ami_id=ami, instance_id=instance,
                                 scan_id=f"{ami}-20261206"), "AccessDeniedException"),
    ("start-scan", "StartScanFunctionRole", dict(action="inspector2:StartOnDemandScan"),
     lambda ami, instance: event("start-scan/scan.json", ami_id=ami, scan_id=f"{ami}-20261206"),
     "AccessDeniedException"),
    ("collect-findings", "CollectFindingsFunctionRole", dict(action="s3:PutObject"),
     lambda ami, instance: event("collect-findings/batch.json"), "AccessDenied"),
    ("export-report", "ExportReportFunctionRole", dict(action="inspector2:ListFindings"),
     lambda ami, instance: event("export-report/scan-complete.json", ami_id=ami, instance_id=instance,
                                 scan_id=f"{ami}-20261206"), "AccessDeniedException"),
    ("tag-ami", "TagAmiFunctionRole", dict(sid="TagOnlyOwnImagesUnderThePrefix"),
     lambda ami, instance: event("tag-ami/in-progress.json", ami_id=ami, instance_id=instance,
                                 scan_id=f"{ami}-20261206"), "UnauthorizedOperation"),
    ("cleanup", "CleanupFunctionRole", dict(sid="TerminateOnlyScannerInstances"),
     lambda ami, instance: {"instance_id": instance, "rule_name": f"amiscan-scan-{instance}"}, "UnauthorizedOperation"),
    ("check-scan", "CheckScanFunctionRole", dict(action="inspector2:ListCoverage"),
     lambda ami, instance: event("check-scan/scan.json", ami_id=ami, instance_id=instance,
                                 scan_id=f"{ami}-20261206"), None),
]


def test_every_function_is_a_case():
    functions = {r["Metadata"]["BuildProperties"]["Binary"] for r in stack.template()["Resources"].values()
                 if r["Type"] == "AWS::Serverless::Function"}
    assert {c[0] for c in CASES} == functions


@pytest.mark.parametrize("binary,role,removed,make_event,code", CASES, ids=[c[0] for c in CASES])
def test_a_call_is_refused_once_its_statement_is_removed_from_the_template(cloud, binary, role, removed, make_event,
                                                                            code):
    ami = cloud.seed_ami(f"iam-{binary}", "ubuntu")
    # export-report reads findings only from the scanner of the scan it reports.
    instance = scanner_instance(cloud, ami, scan_id=f"{ami}-20261206" if binary == "export-report" else None)
    before = len(cloud.denials())
    with revoked(cloud, role, **removed) as actions:
        _, error = cloud.invoke(binary, make_event(ami, instance))
    refused = denials_of(cloud, before, role)
    assert refused, f"{binary} made no refused call without its statement (error: {error})"
    assert refused[0]["action"] in actions, (refused[0], actions)
    if error is not None and code is not None and binary != "collect-findings":
        assert code in error["errorMessage"] and refused[0]["action"] in error["errorMessage"], error
    if binary == "collect-findings":
        # A record it could not store is handed back to the queue, not lost.
        assert error is None
    # And with the template as it is, nothing of this is refused again.
    before = len(cloud.denials())
    cloud.invoke(binary, make_event(ami, instance))
    assert [d for d in denials_of(cloud, before, role) if d["action"] in actions] == []


def refused(call, code):
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code, caught.value.response["Error"]
    return caught.value.response


def test_tag_ami_may_not_write_a_tag_outside_the_prefix(cloud):
    ami = cloud.seed_ami("iam-tag-outside", "ubuntu")
    ec2 = as_role(cloud, "TagAmiFunctionRole", "ec2")
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "amiscan:note", "Value": "inside the prefix"}])
    response = refused(lambda: ec2.create_tags(Resources=[ami], Tags=[{"Key": "Name", "Value": "renamed"}]),
                       "UnauthorizedOperation")
    assert "Encoded authorization failure message" in response["Error"]["Message"]
    assert cloud.image_tags(ami).get("Name") != "renamed"


def test_tag_ami_may_not_delete_every_tag_of_an_ami(cloud):
    """DeleteTags without keys removes every tag; `ForAllValues` holds for an
    empty set of keys, so only an explicit refusal stops it."""
    ami = cloud.seed_ami("iam-tag-every", "ubuntu")
    before = cloud.image_tags(ami)
    ec2 = as_role(cloud, "TagAmiFunctionRole", "ec2")
    refused(lambda: ec2.delete_tags(Resources=[ami]), "UnauthorizedOperation")
    assert cloud.image_tags(ami) == before and before
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "amiscan:note", "Value": "x"}])
    ec2.delete_tags(Resources=[ami], Tags=[{"Key": "amiscan:note"}])


def test_find_amis_may_only_turn_a_pass_into_stale(cloud):
    """find-amis tags an overdue PASS it cannot rescan this run STALE: its
    role writes the verdict and reason keys, from PASS to STALE, nothing else."""
    passed = cloud.seed_ami("iam-stale-pass", "ubuntu")
    failed = cloud.seed_ami("iam-stale-fail", "ubuntu")
    cloud.client("ec2").create_tags(Resources=[passed], Tags=[{"Key": "amiscan:verdict", "Value": "PASS"}])
    cloud.client("ec2").create_tags(Resources=[failed], Tags=[{"Key": "amiscan:verdict", "Value": "FAIL"}])
    ec2 = as_role(cloud, "FindAmisFunctionRole", "ec2")
    stale = [{"Key": "amiscan:verdict", "Value": "STALE"}, {"Key": "amiscan:reason", "Value": "overdue"}]
    refused(lambda: ec2.create_tags(Resources=[failed], Tags=stale), "UnauthorizedOperation")
    refused(lambda: ec2.create_tags(Resources=[passed], Tags=[{"Key": "amiscan:verdict", "Value": "PASS"}]),
            "UnauthorizedOperation")
    refused(lambda: ec2.create_tags(Resources=[passed], Tags=stale + [{"Key": "amiscan:status", "Value": "x"}]),
            "UnauthorizedOperation")
    assert (cloud.image_tags(passed)["amiscan:verdict"], cloud.image_tags(failed)["amiscan:verdict"]) == ("PASS", "FAIL")
    ec2.create_tags(Resources=[passed], Tags=stale)
    assert cloud.image_tags(passed)["amiscan:verdict"] == "STALE"
    refused(lambda: ec2.create_tags(Resources=[passed], Tags=stale), "UnauthorizedOperation")  # no longer a PASS


def test_each_schedule_role_is_assumed_only_for_its_own_schedule(cloud):
    """Scheduler assumes the sweep's role only for the sweep schedule, which
    may then invoke cleanup and nothing else; the weekly run's role only for
    the weekly schedule."""
    schedule = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/amiscan-"
    sweep_role, weekly_role = (cloud.names[f"{r}.Arn"] for r in ("CleanupFunctionHourlySweepRole", "SchedulerRole"))
    for role, other in ((sweep_role, "weekly"), (weekly_role, "sweep"), (sweep_role, "someone-elses")):
        with pytest.raises(PermissionError):
            cloud.session(role, "other", service="scheduler.amazonaws.com", source_arn=schedule + other)
    credentials = cloud.session(sweep_role, "sweep", service="scheduler.amazonaws.com", source_arn=schedule + "sweep")
    lam = cloud.client("lambda", credentials)
    answer = lam.invoke(FunctionName=cloud.names["CleanupFunction"], Payload=json.dumps({"sweep": True}).encode())
    assert "FunctionError" not in answer, answer["Payload"].read()
    refused(lambda: lam.invoke(FunctionName=cloud.names["TagAmiFunction"], Payload=b"{}"), "AccessDeniedException")


def test_cleanup_may_not_terminate_an_instance_without_the_scanners_profile(cloud):
    ami = cloud.seed_ami("iam-cleanup-profile", "ubuntu")
    foreign, scanner = scanner_instance(cloud, ami, profile=False), scanner_instance(cloud, ami)
    ec2 = as_role(cloud, "CleanupFunctionRole", "ec2")
    refused(lambda: ec2.terminate_instances(InstanceIds=[foreign]), "UnauthorizedOperation")
    ec2.terminate_instances(InstanceIds=[scanner])
    states = {i["InstanceId"]: i["State"]["Name"] for r in cloud.client("ec2").describe_instances(
        InstanceIds=[foreign, scanner])["Reservations"] for i in r["Instances"]}
    assert states[foreign] == "running" and states[scanner] in ("shutting-down", "terminated")


def test_find_amis_may_read_only_the_exceptions_file_and_learn_it_is_absent(cloud):
    s3 = as_role(cloud, "FindAmisFunctionRole", "s3")
    # Absent, and it may list that key: 404.
    refused(lambda: s3.get_object(Bucket=BUCKET, Key="config/exceptions.json"), "NoSuchKey")
    # Any other key, present or not: 403.
    cloud.client("s3").put_object(Bucket=BUCKET, Key="config/other.json", Body=b"{}")
    refused(lambda: s3.get_object(Bucket=BUCKET, Key="config/other.json"), "AccessDenied")
    refused(lambda: s3.get_object(Bucket=BUCKET, Key="state/latest/ami-0123456789abcdef0.json"), "AccessDenied")


def test_a_missing_key_is_403_without_s3_list_bucket_and_404_with_it(cloud):
    key = "config/exceptions.json"
    with revoked(cloud, "FindAmisFunctionRole", sid="LearnTheExceptionsFileIsAbsent"):
        s3 = as_role(cloud, "FindAmisFunctionRole", "s3")
        response = refused(lambda: s3.get_object(Bucket=BUCKET, Key=key), "AccessDenied")
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
        head = refused(lambda: s3.head_object(Bucket=BUCKET, Key=key), "403")
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 403
    s3 = as_role(cloud, "FindAmisFunctionRole", "s3")
    response = refused(lambda: s3.get_object(Bucket=BUCKET, Key=key), "NoSuchKey")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert refused(lambda: s3.head_object(Bucket=BUCKET, Key=key), "404")["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_scan_rules_must_be_tagged_and_target_only_the_findings_queue(cloud):
    events = as_role(cloud, "CreateScanRuleFunctionRole", "events")
    pattern = json.dumps({"source": ["aws.inspector2"]})
    refused(lambda: events.put_rule(Name="amiscan-scan-i-untagged", EventPattern=pattern), "AccessDeniedException")
    events.put_rule(Name="amiscan-scan-i-iamtest", EventPattern=pattern,
                    Tags=[{"Key": "amiscan:managed", "Value": "true"}])
    for other in (cloud.names["LaunchScanStateMachine"], cloud.names["ReportAndCleanupStateMachine"]):
        refused(lambda: events.put_targets(Rule="amiscan-scan-i-iamtest", Targets=[{"Id": "x", "Arn": other}]),
                "AccessDeniedException")
    refused(lambda: events.put_targets(Rule="amiscan-scan-i-iamtest", Targets=[
        {"Id": "x", "Arn": cloud.findings_queue_arn}, {"Id": "y", "Arn": cloud.names["LaunchScanStateMachine"]}]),
        "AccessDeniedException")
    events.put_targets(Rule="amiscan-scan-i-iamtest", Targets=[{"Id": "x", "Arn": cloud.findings_queue_arn}])
    cloud.client("events").remove_targets(Rule="amiscan-scan-i-iamtest", Ids=["x"])
    cloud.client("events").delete_rule(Name="amiscan-scan-i-iamtest")


def test_an_operation_without_a_mapping_is_refused_and_named(cloud):
    lam = as_role(cloud, "FindAmisFunctionRole", "lambda")
    response = refused(lambda: lam.list_functions(), "AccessDeniedException")
    assert "ListFunctions" in response["Error"]["Message"]


def test_the_harness_is_an_administrator_and_a_role_without_a_grant_is_not(cloud):
    cloud.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="reports/")
    s3 = as_role(cloud, "TagAmiFunctionRole", "s3")
    refused(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/"), "AccessDenied")


def test_start_scan_on_an_ami_of_another_owner_starts_nothing(cloud):
    """IAM cannot fence this (the on-demand scan's actions have no resource
    type): Inspector scans only the owner's AMIs, and start-scan fails."""
    public = cloud.public_image("ubuntu")
    assert cloud.image(public)["OwnerId"] != "123456789012"
    scans = len(cloud.control("/ondemand/scans", {})["scans"])
    _, error = cloud.invoke("start-scan", event("start-scan/scan.json", ami_id=public, scan_id=f"{public}-20261206"))
    assert error is not None and "not owned by account" in error["errorMessage"], error
    assert len(cloud.control("/ondemand/scans", {})["scans"]) == scans
