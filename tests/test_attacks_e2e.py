"""What an ordinary principal of the account can do to a verdict, on the
strict local cloud: a role with PowerUser-like rights (everything but IAM,
Organizations and Account) and the launch guardrail attached
(`LaunchGuardrail=FAIL_OR_UNSCANNED`), trying each way around the verdict
that amiscan's review found. Each attempt is refused by IAM, or the scan
ends `FAIL` or `INCOMPLETE` with an alert naming what was wrong; none yields
a `PASS`, and a reference AMI with the same real findings, left alone, gets
the verdict the attacked one would have had without the attack.
"""

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))
from localcloud import (ACCOUNT, BUCKET, REGION, LocalCloud, SnapshotBehaviour,  # noqa: E402
                        ondemand_completion_event, ondemand_finding_event)

CRITICAL = ("CRITICAL", "CVE-2024-6387", "openssh-server")
LOW = ("LOW", "CVE-2023-45853", "zlib1g")

# PowerUserAccess, as AWS defines it: everything but IAM, Organizations and
# Account management.
POWER_USER = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"}]}


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(timeout_minutes=1, scan_mode="snapshot", guardrail="FAIL_OR_UNSCANNED") as local:
        yield local


@pytest.fixture(scope="module")
def mallory(cloud):
    """Clients of a same-account developer role: PowerUser rights, the guardrail attached."""
    iam = cloud.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}
    arn = iam.create_role(RoleName="developer", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="developer", PolicyName="power-user", PolicyDocument=json.dumps(POWER_USER))
    iam.attach_role_policy(RoleName="developer", PolicyArn=cloud.guardrail_policy_arn)
    credentials = cloud.session(arn, "mallory")
    return lambda service: cloud.client(service, credentials)


def refused(call, *codes):
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] in codes, caught.value.response["Error"]
    return caught.value.response


def deciding_sid(cloud, operation):
    """The Sid of the Deny that refused mallory's last `operation`."""
    (last,) = [d for d in cloud.denials() if "assumed-role/developer/" in d["caller"]
               and d["operation"] == operation][-1:]
    return [s.get("sid") for s in last["deciding"] or [] if s.get("effect") == "Deny"]


def scan_of(cloud, ami, seconds=60):
    """The AMI's on-demand scan once it runs and start-scan has marked it."""
    s3, deadline = cloud.client("s3"), time.time() + seconds
    while time.time() < deadline:
        for scan in cloud.ondemand_scans(ami):
            marker = f"staging/ondemand/{scan['scanId']}/scan.json"
            if s3.list_objects_v2(Bucket=BUCKET, Prefix=marker).get("KeyCount", 0):
                return scan["scanId"]
        time.sleep(0.5)
    raise TimeoutError(f"no on-demand scan of {ami} was started")


def staged(cloud, scan_id, count, seconds=60):
    """Waits until `count` batch objects of the scan are staged."""
    s3, deadline = cloud.client("s3"), time.time() + seconds
    prefix = f"staging/ondemand/{scan_id}/findings/"
    while time.time() < deadline:
        if s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("KeyCount", 0) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{count} batches of {scan_id} were not staged")


def forge(mallory, event):
    """PutEvents as mallory: the findings' documented source is not `aws.*`,
    so EventBridge takes it from anyone in the account."""
    entry = {**event, "Detail": json.dumps(event["Detail"])}
    answer = mallory("events").put_events(Entries=[entry])
    assert answer["FailedEntryCount"] == 0, answer


def run(cloud, amis):
    out = cloud.find_amis({"ami_ids": amis})
    assert len(out["started"]) == len(amis), out
    executions = cloud.wait_for_scans(amis)
    assert all(e["status"] == "SUCCEEDED" for e in executions), executions
    return {ami: cloud.report_of(ami)[0] for ami in amis}


def alerts_of(cloud, ami):
    return [n for n in cloud.notifications() if n["message"].get("ami_id") == ami]


def test_a_forged_low_closed_copy_of_a_real_critical_still_fails(cloud, mallory):
    attacked, reference = cloud.seed_ami("attacked-copy", "ubuntu"), cloud.seed_ami("reference-copy", "ubuntu")
    hold = threading.Event()
    cloud.expect_snapshot(attacked, SnapshotBehaviour("scan", [CRITICAL], hold=hold))
    cloud.expect_snapshot(reference, SnapshotBehaviour("scan", [CRITICAL]))
    cloud.notifications()
    started = threading.Thread(target=lambda: results.update(run(cloud, [attacked, reference])))
    results = {}
    started.start()
    try:
        scan_id = scan_of(cloud, attacked)
        # The real CRITICAL is finding 0 of the scan: its copy, LOW and CLOSED.
        copy = ondemand_finding_event(0, scan_id, attacked, "LOW", *CRITICAL[1:])
        copy["Detail"]["status"] = "CLOSED"
        forge(mallory, copy)
        staged(cloud, scan_id, 1)
    finally:
        hold.set()
        started.join(timeout=300)
    summary, baseline = results[attacked], results[reference]
    assert baseline["verdict"] == "FAIL"
    assert summary["verdict"] == "FAIL", summary
    assert "different body" in summary["reason"], summary["reason"]
    assert cloud.image_tags(attacked)["amiscan:verdict"] == "FAIL"
    (alert,) = [a for a in alerts_of(cloud, attacked) if a["attributes"]["event_type"] == "AMI_VULNERABLE"]
    assert "different body" in json.dumps(alert["message"]), "the alert says what was wrong"


def test_padding_a_scan_whose_critical_was_lost_is_contradicted_never_pass(cloud, mallory):
    attacked, reference = cloud.seed_ami("attacked-pad", "ubuntu"), cloud.seed_ami("reference-pad", "ubuntu")
    hold = threading.Event()
    # Inspector finds a CRITICAL and a LOW; EventBridge loses the CRITICAL's event.
    cloud.expect_snapshot(attacked, SnapshotBehaviour("scan", [CRITICAL, LOW], lose_findings=1, hold=hold))
    cloud.expect_snapshot(reference, SnapshotBehaviour("scan", [CRITICAL, LOW], lose_findings=1))
    cloud.notifications()
    results = {}
    started = threading.Thread(target=lambda: results.update(run(cloud, [attacked, reference])))
    started.start()
    try:
        scan_id = scan_of(cloud, attacked)
        # One more LOW under the scan makes up Inspector's TOTAL of 2.
        forge(mallory, ondemand_finding_event(99, scan_id, attacked, *LOW))
        staged(cloud, scan_id, 1)
    finally:
        hold.set()
        started.join(timeout=300)
    summary, baseline = results[attacked], results[reference]
    assert baseline["verdict"] == "INCOMPLETE" and "missing" in baseline["reason"], baseline
    assert summary["verdict"] == "INCOMPLETE", summary
    assert "contradicted" in summary["reason"] and "CRITICAL 0 of 1" in summary["reason"], summary["reason"]
    assert cloud.image_tags(attacked)["amiscan:verdict"] == "INCOMPLETE"
    kinds = {a["attributes"]["event_type"]: a for a in alerts_of(cloud, attacked)}
    assert "contradicted" in json.dumps(kinds["SCAN_INCOMPLETE"]["message"])


def test_a_forged_completion_reaches_neither_the_queue_nor_the_bucket_and_no_token_is_readable(cloud, mallory):
    ami = cloud.seed_ami("forged-completion", "ubuntu")
    completion = ondemand_completion_event("8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c", ami, [])
    body = json.dumps({"version": "0", "id": "forged", "detail-type": completion["DetailType"],
                       "source": completion["Source"], "account": ACCOUNT, "region": REGION,
                       "time": "2026-12-06T00:00:00Z", "resources": [ami], "detail": completion["Detail"]})
    queue = cloud.names["FindingsQueue"]
    refused(lambda: mallory("sqs").send_message(QueueUrl=queue, MessageBody=body), "AccessDenied")
    assert "NobodyElseSends" in deciding_sid(cloud, "sqs:SendMessage")
    prefix = "staging/ondemand/8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c"
    s3 = mallory("s3")
    refused(lambda: s3.put_object(Bucket=BUCKET, Key=f"{prefix}/complete.json", Body=body.encode()), "AccessDenied")
    assert "OnlyTheScanFunctionsStage" in deciding_sid(cloud, "s3:PutObject")
    # A staged waiter holds a task token: nobody but the collector and the export reads staging/.
    refused(lambda: s3.get_object(Bucket=BUCKET, Key=f"{prefix}/waiter.json"), "AccessDenied")
    assert "OnlyTheScanFunctionsReadStaging" in deciding_sid(cloud, "s3:GetObject")
    for key in ("scans/scan_date=2026-12-06/forged.json", "state/latest/forged.json", "findings/forged.jsonl"):
        refused(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}"), "AccessDenied")
    # The topic too: an alert is amiscan's word.
    refused(lambda: mallory("sns").publish(TopicArn=cloud.topic_arn, Message="all clear"), "AuthorizationError")


def test_amiscans_machinery_refuses_the_attacker_and_its_functions_refuse_made_up_results(cloud, mallory):
    ami = cloud.seed_ami("driven", "ubuntu")
    cloud.expect_snapshot(ami, SnapshotBehaviour("scan", [CRITICAL]))
    summary = run(cloud, [ami])[ami]
    assert summary["verdict"] == "FAIL"
    made_up = {"scan": {"scan_id": f"{ami}-20261206", "ami_id": ami, "scan_mode": "snapshot",
                        "inspector_scan_id": "8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c"},
               "snapshot": {"scanId": "8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c", "scanStatus": "SUCCESSFUL",
                            "findingSeverityCounts": {"TOTAL": 0}, "source": "event"}}
    report_machine = cloud.names["ReportAndCleanupStateMachine"]
    refused(lambda: mallory("stepfunctions").start_execution(stateMachineArn=report_machine,
                                                             input=json.dumps(made_up)), "AccessDeniedException")
    assert "DenyDrivingAmiscan" in deciding_sid(cloud, "states:StartExecution")
    forged = {"scan": {"scan_id": summary["scan_id"], "ami_id": ami}, "status": "COMPLETE",
              "summary": {**summary, "verdict": "PASS", "critical": 0}}
    refused(lambda: mallory("lambda").invoke(FunctionName="tag-ami", Payload=json.dumps(forged).encode()),
            "AccessDeniedException")
    assert "DenyDrivingAmiscan" in deciding_sid(cloud, "lambda:Invoke")
    refused(lambda: mallory("stepfunctions").send_task_success(taskToken="a-token", output="{}"),
            "AccessDeniedException")
    assert "DenyCompletingWaits" in deciding_sid(cloud, "states:SendTaskSuccess")

    # Whoever may invoke them (amiscan's own roles, an administrator), the
    # functions take no verdict from their input: tag-ami writes the one
    # export-report recorded, and an export of a made-up scan is never PASS.
    _, error = cloud.invoke("tag-ami", {**forged, "summary": {**forged["summary"], "summary_key": "config/x.json"}})
    assert "summary.summary_key" in error["errorMessage"], error
    output, error = cloud.invoke("tag-ami", forged)
    assert error is None, error
    assert cloud.image_tags(ami)["amiscan:verdict"] == "FAIL", "the recorded summary, not the input"
    output, error = cloud.invoke("export-report", made_up)
    assert error is None, error
    assert output["verdict"] == "INCOMPLETE" and "contradicts" in output["reason"], output


def test_the_guardrail_refuses_forged_verdict_tags_and_every_use_of_a_failed_ami(cloud, mallory):
    ec2 = mallory("ec2")
    unscanned = cloud.seed_ami("unscanned-copy", "ubuntu", tagged=False)
    # A verdict key in another case reads as a verdict to IAM: refused.
    refused(lambda: ec2.create_tags(Resources=[unscanned], Tags=[{"Key": "AmiScan:Verdict", "Value": "PASS"}]),
            "UnauthorizedOperation")
    assert "DenyAmiscanTagKeysInAnyCase" in deciding_sid(cloud, "ec2:CreateTags")
    assert "AmiScan:Verdict" not in cloud.image_tags(unscanned)
    subnet = cloud.parameters["SubnetId"]
    refused(lambda: ec2.run_instances(ImageId=unscanned, InstanceType="t3.small", MinCount=1, MaxCount=1,
                                      SubnetId=subnet), "UnauthorizedOperation")
    assert "DenyLaunchingUnscannedAmis" in deciding_sid(cloud, "ec2:RunInstances")

    failed = cloud.seed_ami("failed-image", "ubuntu")
    cloud.expect_snapshot(failed, SnapshotBehaviour("scan", [CRITICAL]))
    assert run(cloud, [failed])[failed]["verdict"] == "FAIL"
    refused(lambda: ec2.create_replace_root_volume_task(InstanceId="i-0123456789abcdef0", ImageId=failed),
            "UnauthorizedOperation")
    assert "DenyUsingFailedAmis" in deciding_sid(cloud, "ec2:CreateReplaceRootVolumeTask")
    refused(lambda: ec2.modify_image_attribute(ImageId=failed, LaunchPermission={"Add": [{"Group": "all"}]}),
            "UnauthorizedOperation")
    assert "DenyUsingFailedAmis" in deciding_sid(cloud, "ec2:ModifyImageAttribute")
    refused(lambda: ec2.run_instances(ImageId=failed, InstanceType="t3.small", MinCount=1, MaxCount=1,
                                      SubnetId=subnet), "UnauthorizedOperation")
    refused(lambda: ec2.create_tags(Resources=[failed], Tags=[{"Key": "amiscan:verdict", "Value": "PASS"}]),
            "UnauthorizedOperation")
    assert cloud.image_tags(failed)["amiscan:verdict"] == "FAIL"


def test_only_the_named_writers_write_the_exceptions_file(cloud, mallory):
    document = {"exceptions": [{"vulnerability_id": "CVE-2024-6387", "ami": "*", "reason": "trust me",
                                "expires": "2099-01-01", "owner": "mallory@example.com"}]}
    refused(lambda: mallory("s3").put_object(Bucket=BUCKET, Key="config/exceptions.json",
                                             Body=json.dumps(document).encode()), "AccessDenied")
    assert "OnlyTheExceptionsWritersWriteConfig" in deciding_sid(cloud, "s3:PutObject")
    # ExceptionsWriters is empty here: only the account's root user writes.
    cloud.client("s3").put_object(Bucket=BUCKET, Key="config/exceptions.json", Body=b'{"exceptions": []}')
