"""member.yaml, the stack a service-managed StackSet rolls out to member
accounts and Regions: plain CloudFormation, account-wide roles only in the
home Region, a role only the hub's function roles may assume with exactly
what those functions do in a member account, and rules that forward only the
account's own events to the hub's bus.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))
import stack  # noqa: E402

MEMBER = stack.template(ROOT / "member.yaml")
HUB, MEMBER_ACCOUNT = "111122223333", "444455556666"
HUB_ROLES = [f"arn:aws:iam::{HUB}:role/amiscan-TagAmiFunctionRole-ABC",
             f"arn:aws:iam::{HUB}:role/amiscan-StartScanFunctionRole-DEF"]
BUS = f"arn:aws:events:eu-west-1:{HUB}:event-bus/amiscan-hub"
# What stays in the hub: reports, queues, the topic, the key, executions, logs.
# What the hub's functions do only in the hub (sts:AssumeRole is how they
# reach the member role; Organizations, how find-amis lists the member units).
HUB_ONLY = ("s3:", "sqs:", "sns:", "kms:", "states:", "logs:", "xray:", "sts:", "organizations:")
INSTANCE_ONLY = {"ec2:RunInstances", "ec2:TerminateInstances", "iam:PassRole", "events:PutRule", "events:PutTargets",
                 "events:TagResource", "events:ListRules", "events:RemoveTargets", "events:DeleteRule"}


def deployed(region="eu-west-1", **parameters):
    """The member stack's resources in one account and Region, every
    intrinsic resolved as CloudFormation would."""
    values = {"HubAccountId": HUB, "HubRegion": "eu-west-1", "HubRoleArns": ",".join(HUB_ROLES),
              "HomeRegion": "eu-west-1", **parameters}
    values = stack.parameter_values(MEMBER, values)
    conditions = stack.conditions_of(MEMBER, {**values, "AWS::Region": region})
    names = {**values, "HubRoleArns": values["HubRoleArns"].split(","), "AWS::Region": region,
             "AWS::AccountId": MEMBER_ACCOUNT, "AWS::Partition": "aws", "AWS::StackName": "StackSet-amiscan-member"}
    resources = {k: v for k, v in MEMBER["Resources"].items() if conditions.get(v.get("Condition"), True)}
    for logical, res in resources.items():
        if res["Type"] == "AWS::IAM::Role":
            names[logical] = stack.Resolver(names, conditions)(res["Properties"]["RoleName"])
            name = stack.Resolver(names, conditions)(res["Properties"]["RoleName"])
            names[f"{logical}.Arn"] = f"arn:aws:iam::{MEMBER_ACCOUNT}:role/{name}"
        names.setdefault(logical, logical.lower())
        names.setdefault(f"{logical}.Arn", f"arn:aws:x::{MEMBER_ACCOUNT}:{logical}")
        names.setdefault(f"{logical}.GroupId", "sg-0123456789abcdef0")
    resolve = stack.Resolver(names, conditions)
    return {k: resolve(v) for k, v in resources.items()}


def statements(role):
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def member_policies(resources):
    """The member role with the instance-scan policy attached to it, if any."""
    policies = list(resources["MemberRole"]["Properties"]["Policies"])
    extra = resources.get("MemberInstanceScanPolicy")
    if extra:
        assert extra["Properties"]["Roles"] == [resources["MemberRole"]["Properties"]["RoleName"]]
        policies.append(extra["Properties"])
    return {"Properties": {"Policies": policies}}


def actions_of(role, effect="Allow"):
    out = set()
    for s in statements(role):
        if s["Effect"] == effect:
            out.update([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return out


def test_member_yaml_is_plain_cloudformation_a_service_managed_stackset_can_deploy():
    assert "Transform" not in MEMBER, "a StackSet cannot use a template with a macro"
    kinds = {r["Type"] for r in MEMBER["Resources"].values()}
    assert not {k for k in kinds if k.startswith(("AWS::Serverless::", "AWS::Lambda::"))}, kinds
    assert not {k for k in kinds if k.startswith(("AWS::S3::", "AWS::SQS::", "AWS::SNS::", "AWS::KMS::"))}, kinds


def test_cfn_lint_and_checkov_accept_it():
    venv = Path(sys.executable).parent
    lint = subprocess.run([venv / "cfn-lint", ROOT / "member.yaml"], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_account_wide_resources_exist_once_and_rules_in_every_region(region):
    resources = deployed(region)
    home = region == "eu-west-1"
    roles = {k for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    assert roles == ({"MemberRole", "ForwarderRole"} if home else set())
    rules = {k for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert rules == {"FindingsRule", "CompletionRule", "AmiAvailableRule"}
    # With a subnet here, the scanner's role and profile are named after the
    # Region: one per Region that scans on instances, never created twice.
    here = deployed(region, InstanceScans="ON", SubnetId="subnet-0123456789abcdef0", VpcId="vpc-0123456789abcdef0")
    scanner = {k: r for k, r in here.items() if k.startswith("Scanner")}
    assert set(scanner) == {"ScannerRole", "ScannerProfile", "ScannerSecurityGroup"}
    assert scanner["ScannerRole"]["Properties"]["RoleName"] == f"amiscan-scanner-{region}"
    assert scanner["ScannerProfile"]["Properties"]["InstanceProfileName"] == f"amiscan-scanner-{region}"
    assert {"Key": "amiscan:managed", "Value": "true"} in scanner["ScannerSecurityGroup"]["Properties"]["Tags"]
    assert not [k for k in deployed(region, InstanceScans="ON") if k.startswith("Scanner")], "no subnet, no scanner"
    assert not [k for k in deployed(region, SubnetId="subnet-0123456789abcdef0", VpcId="vpc-0123456789abcdef0")
                if k.startswith("Scanner")], "instance scans OFF"


def test_only_the_hubs_function_roles_pinned_to_the_hub_account_may_assume_the_member_role():
    role = deployed()["MemberRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Sid": "OnlyTheHubsFunctions", "Effect": "Allow", "Action": "sts:AssumeRole",
                     "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"},
                     "Condition": {"ArnEquals": {"aws:PrincipalArn": HUB_ROLES}}}
    assert role["RoleName"] == "amiscan-member"


def test_the_member_role_grants_what_the_hubs_functions_do_in_a_member_account_and_no_more():
    table = json.loads((ROOT / "tests/iam-actions.json").read_text())
    needed = {a for actions in [*table["functions"].values(), *table["members_only"].values()]
              for a in actions if not a.startswith(HUB_ONLY)}
    on = member_policies(deployed(InstanceScans="ON"))
    off = member_policies(deployed())
    assert not [k for k in deployed("us-east-1", InstanceScans="ON") if k.startswith("Member")], "home Region only"
    assert actions_of(on) == needed, actions_of(on) ^ needed
    assert actions_of(off) == needed - INSTANCE_ONLY, actions_of(off) ^ (needed - INSTANCE_ONLY)
    assert actions_of(on, "Deny") == {"ec2:DeleteTags"}, "never DeleteTags without keys"
    by_sid = {s.get("Sid"): s for s in statements(on)}
    own = {"StringEquals": {"ec2:Owner": MEMBER_ACCOUNT}}
    assert by_sid["TagOnlyOwnImagesUnderThePrefix"]["Condition"] == {
        **own, "ForAllValues:StringLike": {"aws:TagKeys": "amiscan:*"}}
    assert by_sid["FailActionOnOwnImagesOnly"]["Condition"] == own
    # Scan rules here may only target the hub's bus, with the forwarder.
    assert by_sid["TargetOnlyTheHubsBus"]["Condition"]["ForAllValues:ArnEquals"] == {"events:TargetArn": BUS}
    assert by_sid["ForwardWithTheForwarderOnly"]["Resource"] == f"arn:aws:iam::{MEMBER_ACCOUNT}:role/amiscan-member-forwarder"
    for sid in ("LaunchOnlyTaggedImdsv2InstancesWithTheScannerProfile", "TerminateOnlyScannerInstances"):
        assert by_sid[sid]["Condition"]["ArnLike"] == {
            "ec2:InstanceProfile": f"arn:aws:iam::{MEMBER_ACCOUNT}:instance-profile/amiscan-scanner-*"}, sid


def test_each_rule_forwards_only_this_accounts_events_to_the_hubs_bus():
    resources = deployed()
    forwarder = resources["ForwarderRole"]["Properties"]
    (trust,) = forwarder["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": MEMBER_ACCOUNT},
                                  "ArnLike": {"aws:SourceArn": f"arn:aws:events:*:{MEMBER_ACCOUNT}:rule/amiscan-*"}}
    assert [(s["Action"], s["Resource"]) for s in statements(resources["ForwarderRole"])] == [("events:PutEvents", BUS)]
    detail_types = set()
    for logical in ("FindingsRule", "CompletionRule", "AmiAvailableRule"):
        props = resources[logical]["Properties"]
        assert props["Name"].startswith("amiscan-"), "the forwarder's trust names amiscan's rules"
        assert props["EventPattern"]["account"] == [MEMBER_ACCOUNT], logical
        detail_types.update(props["EventPattern"]["detail-type"])
        (target,) = props["Targets"]
        assert target["Arn"] == BUS and target["RoleArn"] == f"arn:aws:iam::{MEMBER_ACCOUNT}:role/amiscan-member-forwarder"
    assert detail_types == {"OnDemand AMI Scan Findings", "Inspector2 OnDemand Scan Complete", "EC2 AMI State Change"}
    assert resources["CompletionRule"]["Properties"]["EventPattern"]["source"] == ["aws.inspector2"]
    assert resources["AmiAvailableRule"]["Properties"]["EventPattern"]["detail"] == {"State": ["available"]}


def test_a_subnet_needs_its_vpc():
    (rule,) = MEMBER["Rules"].values()
    values = stack.parameter_values(MEMBER, {"SubnetId": "subnet-0123456789abcdef0"})
    assert stack.evaluate(rule["RuleCondition"], values, {}, MEMBER)
    assert not stack.evaluate(rule["Assertions"][0]["Assert"], values, {}, MEMBER)


def test_a_service_managed_stackset_deploys_it_to_every_account_of_an_ou_in_each_region():
    """moto's StackSets create the stack instances' resources in the target
    accounts and Regions (FACTS: one OU level down; AutoDeployment and the
    execution roles are not modelled)."""
    import boto3
    from moto import mock_aws

    parameters = {"HubAccountId": HUB, "HubRegion": "eu-west-1", "HubRoleArns": ",".join(HUB_ROLES),
                  "HomeRegion": "eu-west-1", "InstanceScans": "ON"}
    with mock_aws():
        org = boto3.client("organizations", region_name="us-east-1")
        org.create_organization(FeatureSet="ALL")
        root = org.list_roots()["Roots"][0]["Id"]
        ou = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
        accounts = []
        for name in ("team-a", "team-b"):
            account = org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]["AccountId"]
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
            accounts.append(account)
        cfn = boto3.client("cloudformation", region_name="eu-west-1")
        cfn.create_stack_set(StackSetName="amiscan-member", TemplateBody=(ROOT / "member.yaml").read_text(),
                             Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                             PermissionModel="SERVICE_MANAGED", Capabilities=["CAPABILITY_NAMED_IAM"],
                             AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False})
        cfn.create_stack_instances(StackSetName="amiscan-member", DeploymentTargets={"OrganizationalUnitIds": [ou]},
                                   Regions=["eu-west-1", "us-east-1"])
        instances = cfn.list_stack_instances(StackSetName="amiscan-member")["Summaries"]
        assert sorted((i["Account"], i["Region"]) for i in instances) == sorted(
            (a, r) for a in accounts for r in ("eu-west-1", "us-east-1"))
        assert {i["StackInstanceStatus"]["DetailedStatus"] for i in instances} == {"SUCCEEDED"}
        sts = boto3.client("sts", region_name="eu-west-1")
        for account in accounts:
            keys = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                                   RoleSessionName="member-check")["Credentials"]
            session = boto3.Session(aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                                    aws_session_token=keys["SessionToken"])
            iam = session.client("iam", region_name="eu-west-1")
            assert sorted(iam.list_role_policies(RoleName="amiscan-member")["PolicyNames"]) == [
                "scan-on-instances", "scan-this-accounts-amis"]
            trust = iam.get_role(RoleName="amiscan-member")["Role"]["AssumeRolePolicyDocument"]
            assert trust["Statement"][0]["Condition"] == {"ArnEquals": {"aws:PrincipalArn": HUB_ROLES}}
            for region in ("eu-west-1", "us-east-1"):
                events = session.client("events", region_name=region)
                rules = {r["Name"]: json.loads(r["EventPattern"]) for r in events.list_rules(NamePrefix="amiscan-")["Rules"]}
                assert sorted(rules) == ["amiscan-ami-available", "amiscan-ondemand-complete", "amiscan-ondemand-findings"]
                assert all(p["account"] == [account] for p in rules.values())
                for rule in rules:
                    (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
                    assert (target["Arn"], target["RoleArn"]) == (BUS, f"arn:aws:iam::{account}:role/amiscan-member-forwarder")
                scanner = [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]
                assert scanner == [], "no subnet was given: no scanner profile"


HUB_TEMPLATE = stack.template()
ORG = "o-abcdefghij"


def hub(**parameters):
    """The hub's resources and outputs with these parameters, conditions decided."""
    values = {"SubnetId": "subnet-0123456789abcdef0", "VpcId": "vpc-0123456789abcdef0", **parameters}
    conditions = stack.conditions_of(HUB_TEMPLATE, stack.parameter_values(HUB_TEMPLATE, values))

    def kept(section):
        return {k: stack.decided(v, conditions) for k, v in HUB_TEMPLATE[section].items()
                if conditions.get(v.get("Condition"), True)}

    return kept("Resources"), kept("Outputs")


MEMBER_RULES = {"MemberFindingsRule", "MemberCompletionRule", "MemberAmiAvailableRule"}


def test_a_hub_without_an_organization_creates_nothing_of_it():
    resources, outputs = hub()
    assert not {"HubEventBus", "HubEventBusPolicy", *MEMBER_RULES} & set(resources)
    assert not {"HubEventBusName", "HubRoleArns"} & set(outputs)
    sources = resources["FindingsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]
    assert sources["ArnEquals"]["aws:SourceArn"] == [{"Fn::GetAtt": ["SnapshotFindingsRule", "Arn"]},
                                                     {"Fn::GetAtt": ["SnapshotCompletionRule", "Arn"]}]


def test_the_hubs_bus_admits_only_the_organization_and_routes_to_the_queues_amiscan_has():
    resources, outputs = hub(OrganizationId=ORG)
    assert resources["HubEventBus"]["Properties"]["Name"] == {"Ref": "HubEventBusName"}
    policy = resources["HubEventBusPolicy"]["Properties"]
    assert policy["Statement"] == {
        "Sid": "OnlyTheOrganizationsAccounts", "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents",
        "Resource": {"Fn::GetAtt": ["HubEventBus", "Arn"]},
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}}
    queue = {"MemberFindingsRule": "FindingsQueue", "MemberCompletionRule": "FindingsQueue",
             "MemberAmiAvailableRule": "RunsQueue"}
    for logical, target in queue.items():
        props = resources[logical]["Properties"]
        assert props["EventBusName"] == {"Ref": "HubEventBus"}, logical
        (rule_target,) = props["Targets"]
        assert rule_target["Arn"] == {"Fn::GetAtt": [target, "Arn"]}, logical
    # The same detail types member.yaml forwards.
    forwarded = {t for r in ("FindingsRule", "CompletionRule", "AmiAvailableRule")
                 for t in MEMBER["Resources"][r]["Properties"]["EventPattern"]["detail-type"]}
    assert {t for r in MEMBER_RULES for t in resources[r]["Properties"]["EventPattern"]["detail-type"]} == forwarded
    # The queues admit those rules, and the findings queue's deny exempts them.
    statements = resources["FindingsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    for rule in ("MemberFindingsRule", "MemberCompletionRule"):
        arn = {"Fn::GetAtt": [rule, "Arn"]}
        assert arn in by_sid["OnlyAmiscansRules"]["Condition"]["ArnEquals"]["aws:SourceArn"]
        assert arn in by_sid["NobodyElseSends"]["Condition"]["ArnNotLike"]["aws:SourceArn"]
    (runs,) = resources["RunsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"Fn::GetAtt": ["MemberAmiAvailableRule", "Arn"]} in runs["Condition"]["ArnEquals"]["aws:SourceArn"]
    # member.yaml's parameters come from the hub's outputs.
    assert outputs["HubEventBusName"]["Value"] == {"Ref": "HubEventBus"}
    assert MEMBER["Parameters"]["HubEventBusName"]["Default"] == HUB_TEMPLATE["Parameters"]["HubEventBusName"]["Default"]
    roles = outputs["HubRoleArns"]["Value"]["Fn::Join"][1]
    assert [r["Fn::GetAtt"][0] for r in roles] == [
        "FindAmisFunctionRole", "StartScanFunctionRole", "CheckScanFunctionRole", "ExportReportFunctionRole",
        "TagAmiFunctionRole", "LaunchInstanceFunctionRole", "CreateScanRuleFunctionRole", "CleanupFunctionRole"]
    _, snapshot_outputs = hub(OrganizationId=ORG, ScanMode="snapshot")
    assert len(snapshot_outputs["HubRoleArns"]["Value"]["Fn::Join"][1]) == 5
    resources, _ = hub(OrganizationId=ORG, ScanOnCreate="OFF")
    assert "MemberAmiAvailableRule" not in resources and "RunsQueuePolicy" not in resources


def test_deploy_members_creates_then_extends_the_stackset_from_the_hubs_outputs():
    """local/members.py (make deploy-members) on moto's Organizations and
    StackSets: the hub's outputs become the parameters, each OU x Region gets
    an instance once, a later run adds a Region and updates the rest."""
    import boto3
    import members
    from moto import mock_aws

    with mock_aws():
        org = boto3.client("organizations", region_name="eu-west-1")
        org.create_organization(FeatureSet="ALL")
        root = org.list_roots()["Roots"][0]["Id"]
        ou = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
        accounts = set()
        for name in ("team-a", "team-b"):
            account = org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]["AccountId"]
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
            accounts.add(account)
        cfn = boto3.client("cloudformation", region_name="eu-west-1")
        # A hub deployed without OrganizationId has nothing to give members.
        cfn.create_stack(StackName="plain", TemplateBody=json.dumps({
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}))
        with pytest.raises(SystemExit, match="deploy the hub with OrganizationId first"):
            members.hub_parameters(cfn, "plain")
        cfn.create_stack(StackName="amiscan", TemplateBody=json.dumps({
            "Parameters": {"TagPrefix": {"Type": "String", "Default": "corp:"}},
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"HubEventBusName": {"Value": "amiscan-hub"}, "HubRoleArns": {"Value": ",".join(HUB_ROLES)}}}))
        hub_account = cfn.describe_stacks(StackName="amiscan")["Stacks"][0]["StackId"].split(":")[4]
        assert members.hub_parameters(cfn, "amiscan") == {
            "HubAccountId": hub_account, "HubEventBusName": "amiscan-hub", "HubRoleArns": ",".join(HUB_ROLES),
            "TagPrefix": "corp:"}
        hub = members.hub_parameters(cfn, "amiscan")
        with pytest.raises(SystemExit, match="not one of the Regions"):
            members.deploy(cfn, "amiscan-members", hub, "eu-west-1", [ou], ["eu-west-1"], home_region="us-east-1")
        rows = members.deploy(cfn, "amiscan-members", hub, "eu-west-1", [ou], ["eu-west-1"])
        assert {(a, r) for a, r, _ in rows} == {(a, "eu-west-1") for a in accounts}
        rows = members.deploy(cfn, "amiscan-members", hub, "eu-west-1", [ou], ["eu-west-1", "us-east-1"])
        assert sorted((a, r) for a, r, _ in rows) == sorted((a, r) for a in accounts for r in ("eu-west-1", "us-east-1"))
        assert {status for _, _, status in rows} == {"SUCCEEDED"}
        assert [s["StackSetName"] for s in cfn.list_stack_sets()["Summaries"]] == ["amiscan-members"]
        described = cfn.describe_stack_set(StackSetName="amiscan-members")["StackSet"]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
        assert parameters["HomeRegion"] == "eu-west-1" and parameters["TagPrefix"] == "corp:"
        assert described["PermissionModel"] == "SERVICE_MANAGED"  # (moto keeps no AutoDeployment)


@pytest.mark.parametrize("mode", ["FAIL", "FAIL_OR_UNSCANNED"])
def test_the_member_guardrail_refuses_the_accounts_blocked_amis_and_excepts_only_the_hubs_role(mode):
    import guardrail

    assert "LaunchGuardrailPolicy" not in deployed(), "off by default"
    assert "LaunchGuardrailPolicy" not in deployed("us-east-1", LaunchGuardrail=mode), "home Region only"
    resources = deployed(LaunchGuardrail=mode)
    document = json.loads(resources["LaunchGuardrailPolicy"]["Properties"]["PolicyDocument"])
    assert guardrail.managed_size(document) <= guardrail.MANAGED_POLICY_MAX
    expected = {"DenyUsingFailedAmis", "DenyChangingAmiscanTagsOnAmis", "DenyDeletingEveryTagOfAnAmi",
                "DenyAmiscanTagKeysInAnyCase"} | ({"DenyLaunchingUnscannedAmis"} if mode == "FAIL_OR_UNSCANNED" else set())
    assert {s["Sid"] for s in document["Statement"]} == expected
    hub_role = f"arn:aws:iam::{MEMBER_ACCOUNT}:role/amiscan-member"
    person = f"arn:aws:iam::{MEMBER_ACCOUNT}:role/developer"
    with guardrail.Evaluator() as iam:
        def denied(action, tags, keys=None, who=person, owner=MEMBER_ACCOUNT):
            return iam.denied_by(document, action, who, owner, tags, keys) is not None

        assert denied("ec2:RunInstances", {"amiscan:verdict": "FAIL"})
        assert not denied("ec2:RunInstances", {"amiscan:verdict": "PASS"})
        assert denied("ec2:RunInstances", {"amiscan:verdict": "STALE"}) == (mode == "FAIL_OR_UNSCANNED")
        assert denied("ec2:RunInstances", {}) == (mode == "FAIL_OR_UNSCANNED")
        assert denied("ec2:ModifyImageAttribute", {"amiscan:verdict": "FAIL"}), "no sharing a failed AMI"
        assert not denied("ec2:RunInstances", {"amiscan:verdict": "FAIL"}, owner="777788889999")
        assert denied("ec2:CreateTags", {"amiscan:verdict": "FAIL"}, ["amiscan:verdict"])
        assert denied("ec2:CreateTags", {"amiscan:verdict": "FAIL"}, ["AmiScan:Verdict"])
        assert denied("ec2:DeleteTags", {"amiscan:verdict": "FAIL"}, None)
        assert not denied("ec2:CreateTags", {"amiscan:verdict": "FAIL"}, ["amiscan:verdict"], who=hub_role)
        # The hub's role launches a blocked AMI to rescan it (instance scans).
        assert not denied("ec2:RunInstances", {"amiscan:verdict": "FAIL"}, who=hub_role)
        assert not denied("ec2:RunInstances", {}, who=hub_role)
        assert not denied("ec2:CreateTags", {}, ["Name"])
