"""End-to-end scenarios of one hub over an organization: the real ASL and
Lambdas on the local cloud with three accounts of one organization (the hub
and two members with member.yaml, in two Regions) and a fourth listed
without it. Judged on what each account holds afterwards: tags on each
member's AMIs in that account, one report set in the hub's bucket, the
run's alert, and what the strict evaluator refused."""

import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from localcloud import ACCOUNT, REGION, Behaviour, SnapshotBehaviour  # noqa: E402
from orgcloud import HUB_BUS, REGION2, OrgCloud  # noqa: E402

CRITICAL = ("CRITICAL", "CVE-2024-6387", "openssh-server")
MEDIUM = ("MEDIUM", "CVE-2023-5678", "zlib")


@pytest.fixture(scope="module")
def org():
    with OrgCloud(timeout_minutes=1) as cloud:
        yield cloud


def scanned(org, amis, seconds=300):
    launches = org.wait_for_scans(amis, seconds=seconds)
    assert [e["status"] for e in launches] == ["SUCCEEDED"] * len(amis), launches
    assert org.stand_in_errors == [], org.stand_in_errors


def test_one_weekly_run_scans_every_member_and_region_in_its_own_account_and_reports_in_the_hub(org):
    team_a, team_b = org.members
    amis = {
        (ACCOUNT, REGION): org.seed_ami("hub-golden"),
        (team_a, REGION): org.seed_member_ami(team_a, REGION, "team-a-golden"),
        (team_a, REGION2): org.seed_member_ami(team_a, REGION2, "team-a-golden-copy"),
        (team_b, REGION2): org.seed_member_ami(team_b, REGION2, "team-b-golden"),
    }
    failing = amis[(team_a, REGION2)]
    for ami in amis.values():
        org.expect_snapshot(ami, SnapshotBehaviour(findings=[CRITICAL] if ami == failing else [MEDIUM]))
    org.notifications()
    org.weekly_run()
    org.wait_for_runs()
    scanned(org, list(amis.values()))

    # Tags are written on each AMI in its own account and Region.
    for (account, region), ami in amis.items():
        tags = (org.image_tags(ami) if account == ACCOUNT else org.member_image_tags(account, region, ami))
        verdict = "FAIL" if ami == failing else "PASS"
        assert (tags.get("amiscan:status"), tags.get("amiscan:verdict")) == ("COMPLETE", verdict), (account, region, tags)
        assert tags["amiscan:scan-mode"] == "snapshot"
    # One report set, in the hub's bucket, each row and summary naming the
    # AMI's account and Region.
    for (account, region), ami in amis.items():
        summary, rows = org.report_of(ami)
        assert (summary["account_id"], summary["region"]) == (account, region), summary
        assert rows and all((r["account_id"], r["region"]) == (account, region) for r in rows), rows
    # The run names the account without the member stack as not onboarded.
    notes = org.notifications()
    (run,) = [n for n in notes if n["attributes"]["event_type"] == "SCAN_BATCH_STARTED"]
    assert run["attributes"]["severity"] == "WARNING", run
    assert [a["account_id"] for a in run["message"]["not_onboarded"]] == [org.not_onboarded]
    assert len(run["message"]["places"]) == 5, "the hub's Region and each member's two"
    # team-a and team-b are members by their unit (team-b one unit deeper):
    # MemberAccounts names team-c only.
    assert {p["account_id"] for p in run["message"]["places"]} == {ACCOUNT, team_a, team_b}
    assert "ous_not_listed" not in run["message"] or run["message"]["ous_not_listed"] == []
    # A member's alerts say where its AMI is.
    (vulnerable,) = [n for n in notes if n["attributes"]["event_type"] == "AMI_VULNERABLE"]
    assert (vulnerable["attributes"]["account_id"], vulnerable["attributes"]["region"]) == (team_a, REGION2)
    assert f"[{team_a}/{REGION2}]" in vulnerable["subject"]
    # The one refusal: find-amis asking for team-c's member role, which is not there.
    refused = {(d["action"], d["resource"]) for d in org.denials()}
    assert refused == {("sts:AssumeRole", f"arn:aws:iam::{org.not_onboarded}:role/amiscan-member")}, refused


def test_a_new_ami_in_a_member_is_scanned_on_its_creation_event(org):
    team_b = org.members[1]
    ami = org.seed_member_ami(team_b, REGION, "team-b-fresh", announce=False)
    org.expect_snapshot(ami, SnapshotBehaviour(findings=[MEDIUM]))
    # EC2's event, on team-b's own default bus: its rule forwards it to the hub.
    org.put_events([{
        "Source": "aws.ec2", "DetailType": "EC2 AMI State Change",
        "Resources": [f"arn:aws:ec2:{REGION}::image/{ami}"],
        "Detail": {"RequestId": "0", "ImageId": ami, "State": "available", "ErrorMessage": ""},
    }], org.administrator(team_b), REGION)
    org.wait_for_runs()
    scanned(org, [ami])
    assert org.member_image_tags(team_b, REGION, ami)["amiscan:verdict"] == "PASS"


def test_an_unreadable_member_ami_without_a_subnet_ends_not_scannable(org):
    team_a = org.members[0]
    ami = org.seed_member_ami(team_a, REGION, "team-a-windows-2003")
    org.expect_snapshot(ami, SnapshotBehaviour("fail", reason="UNSUPPORTED_OS"))
    org.find_amis({"ami_ids": [ami]})
    scanned(org, [ami])
    tags = org.member_image_tags(team_a, REGION, ami)
    assert tags["amiscan:status"] == "NOT_SCANNABLE", tags
    assert "UNSUPPORTED_OS" in tags["amiscan:reason"], tags
    assert tags["amiscan:reason"].endswith(f"no subnet for instance scans in {team_a}/{REGION}"), tags
    assert org.scanner_instances_of(ami) == [], "no instance is launched for a member's AMI"


def test_an_unreadable_member_ami_with_a_subnet_falls_back_to_an_instance_scan_there(org):
    team_b = org.members[1]
    ami = org.seed_member_ami(team_b, REGION, "team-b-legacy")
    org.expect_snapshot(ami, SnapshotBehaviour("fail", reason="UNSUPPORTED_OS"))
    running = []  # the instance as Inspector found it, running
    org.expect(ami, Behaviour("scan", [MEDIUM], before_event=lambda _, instance: running.append(instance)))
    refused_before = len(org.denials())
    org.find_amis({"ami_ids": [ami]})
    launches = org.wait_for_scans([ami], seconds=300)
    scanned(org, [ami])
    # Inspector's event woke the wait (team-b's rule forwarded it to the
    # hub's bus, whose rule carried the token): the deadline was not reached.
    entered = [e["stateEnteredEventDetails"]["name"] for e in org.history(launches[0])
               if "stateEnteredEventDetails" in e]
    assert entered.index("Fall Back To Instance Scan") < entered.index("Launch Scan Instance"), entered
    assert "Report Instance Scan" in entered and "Check Instance Scan" not in entered, entered
    tags = org.member_image_tags(team_b, REGION, ami)
    assert (tags["amiscan:status"], tags["amiscan:verdict"], tags["amiscan:scan-mode"]) == (
        "COMPLETE", "PASS", "instance"), tags
    # Inspector read the instance's findings in team-b; the report, in the
    # hub's bucket, says so.
    summary, rows = org.report_of(ami)
    assert (summary["account_id"], summary["region"], summary["scan_mode"]) == (team_b, REGION, "instance"), summary
    assert [(r["account_id"], r["severity"]) for r in rows] == [(team_b, "MEDIUM")], rows
    # The instance ran in team-b, in member.yaml's subnet with its group and
    # profile, and is terminated; none ran in the hub.
    ec2 = org.member_client("ec2", team_b)
    (instance,) = running
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "tag-key", "Values": ["amiscan:scanner-subnet"]}])[
        "SecurityGroups"]
    assert instance["SubnetId"] == {t["Key"]: t["Value"] for t in group["Tags"]}["amiscan:scanner-subnet"]
    # (The group is given on the launch's network interface.)
    assert [g["GroupId"] for i in instance["NetworkInterfaces"] for g in i["Groups"]] == [group["GroupId"]], instance
    assert instance["IamInstanceProfile"]["Arn"] == f"arn:aws:iam::{team_b}:instance-profile/amiscan-scanner-{REGION}"
    (after,) = [i for r in ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"]
                for i in r["Instances"]]
    assert after["State"]["Name"] == "terminated", after["State"]
    assert org.scanner_instances_of(ami) == []
    # Its two rules are gone: the forwarding one in team-b, the one with the
    # token on the hub's bus.
    rule = f"amiscan-scan-{instance['InstanceId']}"
    assert org.member_client("events", team_b).list_rules(NamePrefix=rule)["Rules"] == []
    assert org.client("events").list_rules(NamePrefix=rule, EventBusName=HUB_BUS)["Rules"] == []
    # Every call of the scan was allowed: the member role grants what the
    # instance functions do there, and the hub's roles what they do at home
    # (the run's one refusal is find-amis asking for team-c's role).
    refused = {(d["action"], d["resource"]) for d in org.denials()[refused_before:]}
    assert refused == {("sts:AssumeRole", f"arn:aws:iam::{org.not_onboarded}:role/amiscan-member")}, refused


def test_the_hubs_bus_refuses_an_account_outside_the_organization(org):
    outsider = org.administrator("999999999999")
    events = org.client("events", outsider)
    bus = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{HUB_BUS}"
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[{"Source": "aws.inspector2", "DetailType": "Inspector2 OnDemand Scan Complete",
                                    "Detail": "{}", "EventBusName": bus}])
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException", refused.value.response
    assert any(d["caller"].endswith("999999999999:root") and d["action"] == "events:PutEvents" for d in org.denials())


def test_the_member_role_admits_only_the_hubs_function_roles(org):
    team_a = org.members[0]
    member_role = f"arn:aws:iam::{team_a}:role/amiscan-member"
    allowed = org.session(org.names["FindAmisFunctionRole.Arn"], "find-amis")
    sts = org.client("sts", allowed)
    assumed = sts.assume_role(RoleArn=member_role, RoleSessionName="check")["AssumedRoleUser"]["Arn"]
    assert assumed.startswith(f"arn:aws:sts::{team_a}:assumed-role/amiscan-member/")
    for refused in ("CollectFindingsFunctionRole.Arn", "SchedulerRole.Arn"):
        credentials = org.session(org.names[refused], "not-a-hub-role")
        with pytest.raises(ClientError) as denied:
            org.client("sts", credentials).assume_role(RoleArn=member_role, RoleSessionName="check")
        assert denied.value.response["Error"]["Code"] == "AccessDenied", refused
    # A member's own administrator is no hub function either (the trust
    # names the hub's account and its roles).
    with pytest.raises(ClientError):
        org.client("sts", org.administrator(org.members[1])).assume_role(RoleArn=member_role, RoleSessionName="team-b-admin")
