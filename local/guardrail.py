"""The launch guardrail as IAM would receive it: the managed policy the stack
creates (LaunchGuardrail=FAIL or FAIL_OR_UNSCANNED), resolved from
template.yaml itself, and the same statements as a service control policy
for AWS Organizations.

    python local/guardrail.py --mode FAIL_OR_UNSCANNED            # the SCP
    python local/guardrail.py --policy --account 111122223333     # the managed policy
    python local/guardrail.py --stack amiscan --region eu-west-1  # the SCP of a deployed stack

With --stack, the account and amiscan's role ARNs come from the deployed
stack (boto3, your credentials); without, from --account and --*-role.
A hub with member accounts (--member-role, or a stack with MemberAccounts or
MemberOrganizationalUnits) also exempts each account's own member.yaml role
(arn:…:iam::*:role/<name>) from the image statements: the SCP then serves every
account of the organization, the hub's and the members'.

The SCP differs from the managed policy in one value only: the AMI owner
is the calling principal's own account (`${aws:PrincipalAccount}`). Each
exemption is the exact ARN of amiscan's role in its own account, so a role
of the same name created in another account escapes nothing.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from stack import Resolver, conditions_of, template

ROOT = Path(__file__).resolve().parents[1]
POLICY = "LaunchGuardrailPolicy"
# IAM's limits: a managed policy counts characters without white space, an
# SCP counts every character.
MANAGED_POLICY_MAX = 6144
SCP_MAX = 5120


# The resources the guardrail names besides the two roles it exempts from
# the image statements: amiscan's machines, functions and the roles that
# drive them.
FUNCTIONS = ("FindAmisFunction", "StartScanFunction", "CollectFindingsFunction", "ExportReportFunction",
             "TagAmiFunction", "CheckScanFunction", "LaunchInstanceFunction", "CreateScanRuleFunction",
             "CleanupFunction")
MACHINES = {"LaunchScanStateMachine": "launch-scan", "ReportAndCleanupStateMachine": "report-and-cleanup"}
ROLES = ("LaunchInstanceFunctionRole", "TagAmiFunctionRole", "FindAmisFunctionRole", "LaunchScanStateMachineRole",
         "ReportAndCleanupStateMachineRole", "CollectFindingsFunctionRole", "CleanupFunctionHourlySweepRole")


def example_names(account, partition="aws", region="us-east-1", stack="amiscan"):
    """Ref/GetAtt values as CloudFormation would name the stack's resources
    (the generated suffix shown as EXAMPLE)."""
    names = {f"{r}.Arn": f"arn:{partition}:iam::{account}:role/{stack}-{r}-EXAMPLE" for r in ROLES}
    names.update({f"{f}.Arn": f"arn:{partition}:lambda:{region}:{account}:function:{stack}-{f}-EXAMPLE"
                  for f in FUNCTIONS})
    names.update({m: f"arn:{partition}:states:{region}:{account}:stateMachine:{stack}-{n}" for m, n in MACHINES.items()})
    return names


def managed_policy(mode, account="123456789012", partition="aws", tag_prefix=None,
                   launch_role=None, tag_role=None, parsed=None, scan_mode=None, arns=None):
    """The managed policy document the stack creates, as a dict. `arns`
    gives the real values of any `Logical` or `Logical.Arn` it names."""
    parsed = parsed or template()
    parameters = {"LaunchGuardrail": mode}
    if scan_mode is not None:
        parameters["ScanMode"] = scan_mode
    if tag_prefix is not None:
        parameters["TagPrefix"] = tag_prefix
    conditions = conditions_of(parsed, parameters)
    if not conditions[parsed["Resources"][POLICY]["Condition"]]:
        raise SystemExit(f"LaunchGuardrail={mode} creates no guardrail policy")
    names = {
        "AWS::AccountId": account, "AWS::Partition": partition, "AWS::Region": "us-east-1",
        "AWS::StackName": "amiscan",
        "TagPrefix": parameters.get("TagPrefix", parsed["Parameters"]["TagPrefix"]["Default"]),
        **example_names(account, partition),
        **(arns or {}),
    }
    if launch_role:
        names["LaunchInstanceFunctionRole.Arn"] = launch_role
    if tag_role:
        names["TagAmiFunctionRole.Arn"] = tag_role
    text = Resolver(names, conditions)(parsed["Resources"][POLICY]["Properties"]["PolicyDocument"])
    return json.loads(text)


def scp(policy, account, member_role=None):
    """The managed policy's statements as an SCP: the AMI owner is the
    calling principal's own account, so that one document serves each
    account it is attached to; every exemption stays the exact ARN of
    amiscan's role in the account it belongs to (a role of the same name
    created elsewhere is not exempt). With `member_role` (a hub with member
    accounts), each image statement's exemption (launch-instance's role for
    the launch statements, tag-ami's and find-amis' for the tag statements)
    also spares member.yaml's role (`ArnNotLike` `arn:…:iam::*:role/<name>`
    beside the `ArnNotEquals`: a Deny refuses only when both hold), through
    which those functions write the verdict tags there and launch an AMI to
    rescan it. A principal's ARN names its own account, and the image
    statements concern only the caller's own account's AMIs (`ec2:Owner`),
    so this spares each account's own role of that name on that account's
    AMIs; ArnLike takes `*` in any of the ARN's six parts.
    (`${aws:PrincipalAccount}` in the account part would say the same, but
    the local cloud's evaluator splits the ARN at its colons before it
    resolves a variable, and that variable holds a colon.)"""
    document = json.loads(json.dumps(policy))
    for statement in document["Statement"]:
        owner = statement["Condition"].get("StringEquals", {})
        if owner.get("ec2:Owner") == account:
            owner["ec2:Owner"] = "${aws:PrincipalAccount}"
        on_images = str(statement["Resource"]).endswith("::image/*")
        exempt = statement["Condition"].get("ArnNotEquals", {}).get("aws:PrincipalArn")
        if member_role and on_images and exempt:
            exempt = [exempt] if isinstance(exempt, str) else exempt
            partition = exempt[0].split(":")[1]
            # A Deny's conditions all hold for it to refuse: not one of the
            # hub's roles, and not a member role.
            assert "ArnNotLike" not in statement["Condition"], statement
            statement["Condition"]["ArnNotLike"] = {"aws:PrincipalArn": f"arn:{partition}:iam::*:role/{member_role}"}
    return document


FULL_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class Evaluator:
    """IAM's decisions on the guardrail, by the local cloud's evaluator
    (@cloud-copilot/iam-simulate behind local/iam-server.mjs): a request by a
    principal who may otherwise do anything, on one image (its owner and its
    tags as EC2 reports them), under the guardrail as the managed policy
    attached to the principal or as an SCP on its account."""

    def __init__(self):
        from iam import Authorizer

        self.authorizer = Authorizer()

    def close(self):
        self.authorizer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def decide(self, document, action, principal, owner, tags, tag_keys=None, as_scp=False,
               image="ami-0123456789abcdef0", region="us-east-1", resource=None):
        """(decision, Sid of the deciding Deny or None): decision is
        iam-simulate's ("Allowed", "ExplicitlyDenied", ...). `tag_keys` are
        the keys of a CreateTags or DeleteTags request (None: it names none,
        as a DeleteTags that removes every tag)."""
        account = principal.split(":")[4]
        context = {"aws:PrincipalArn": principal, "aws:PrincipalAccount": account, "ec2:Owner": owner,
                   **{f"ec2:ResourceTag/{k}": v for k, v in (tags or {}).items()},
                   **{f"aws:ResourceTag/{k}": v for k, v in (tags or {}).items()}}
        if tag_keys:
            context["aws:TagKeys"] = list(tag_keys)
        simulation = {
            "identityPolicies": [{"name": "may-do-anything", "policy": FULL_ACCESS}],
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
            "request": {"action": action, "principal": principal,
                        # An image is shared by EC2's launch permissions, not
                        # by a resource policy: the request is the caller's.
                        "resource": {"accountId": account,
                                     "resource": resource or f"arn:aws:ec2:{region}::image/{image}"},
                        "contextVariables": context},
        }
        if as_scp:
            simulation["serviceControlPolicies"] = [
                {"orgIdentifier": "r-root", "policies": [{"name": "FullAWSAccess", "policy": FULL_ACCESS}]},
                {"orgIdentifier": account, "policies": [{"name": "FullAWSAccess", "policy": FULL_ACCESS},
                                                        {"name": "amiscan-launch-guardrail", "policy": document}]},
            ]
        else:
            simulation["identityPolicies"].append({"name": "amiscan-launch-guardrail", "policy": document})
        (result,) = self.authorizer.simulate([simulation])
        if result["decision"] == "Error":
            raise RuntimeError(f"iam-simulate: {result['errors']}")
        sids = [d.get("sid") for d in result.get("deciding") or [] if d.get("effect") == "Deny"]
        return result["decision"], (sids[0] if sids else None)

    def denied_by(self, document, action, principal, owner=None, tags=None, tag_keys=None, as_scp=False,
                  resource=None):
        """The Sid of the Deny that refuses the request, or None when allowed."""
        decision, sid = self.decide(document, action, principal, owner, tags, tag_keys, as_scp, resource=resource)
        if decision == "Allowed":
            return None
        return sid or decision


def managed_size(document):
    return len(re.sub(r"\s", "", json.dumps(document)))


def scp_text(document):
    return json.dumps(document, separators=(",", ":"))


def from_stack(stack, region):
    import boto3

    cfn = boto3.client("cloudformation", region_name=region)
    parameters = {p["ParameterKey"]: p["ParameterValue"]
                  for p in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])}
    physical = {r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
                for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]}
    identity = boto3.client("sts", region_name=region).get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]
    arns = {}
    for logical, (kind, name) in physical.items():
        if kind == "AWS::IAM::Role":
            arns[f"{logical}.Arn"] = f"arn:{partition}:iam::{account}:role/{name}"
        elif kind == "AWS::Lambda::Function":
            arns[f"{logical}.Arn"] = f"arn:{partition}:lambda:{region}:{account}:function:{name}"
        elif kind == "AWS::StepFunctions::StateMachine":
            arns[logical] = name  # its Ref is its ARN
    members = parameters.get("MemberAccounts") or parameters.get("MemberOrganizationalUnits")
    return dict(mode=parameters.get("LaunchGuardrail", "OFF"), account=account, partition=partition,
                tag_prefix=parameters.get("TagPrefix"), scan_mode=parameters.get("ScanMode"), arns=arns), (
        parameters.get("MemberRoleName") or "amiscan-member") if members else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="FAIL", choices=["FAIL", "FAIL_OR_UNSCANNED"])
    parser.add_argument("--policy", action="store_true", help="print the managed policy instead of the SCP")
    parser.add_argument("--account", default="123456789012")
    parser.add_argument("--partition", default="aws")
    parser.add_argument("--tag-prefix")
    parser.add_argument("--launch-role", help="ARN of amiscan's launch-instance role")
    parser.add_argument("--tag-role", help="ARN of amiscan's tag-ami role")
    parser.add_argument("--scan-mode", choices=["auto", "instance", "snapshot"])
    parser.add_argument("--member-role", help="member.yaml's MemberRoleName, for a hub with member accounts: "
                        "each account's own role of that name is exempt from the image statements")
    parser.add_argument("--stack", help="read the values from this deployed stack")
    parser.add_argument("--region")
    args = parser.parse_args()
    values, member_role = from_stack(args.stack, args.region) if args.stack else (dict(
        mode=args.mode, account=args.account, partition=args.partition, tag_prefix=args.tag_prefix,
        launch_role=args.launch_role, tag_role=args.tag_role, scan_mode=args.scan_mode), None)
    member_role = args.member_role or member_role
    if values["mode"] == "OFF":
        raise SystemExit(f"stack {args.stack} has LaunchGuardrail=OFF: it creates no guardrail")
    policy = managed_policy(**values)
    if args.policy:
        print(json.dumps(policy, indent=2))
        size, limit = managed_size(policy), MANAGED_POLICY_MAX
    else:
        text = scp_text(scp(policy, values["account"], member_role))
        print(text)
        size, limit = len(text), SCP_MAX
    print(f"{size} of {limit} characters", file=sys.stderr)
    if size > limit:
        raise SystemExit(f"the document is {size} characters, over IAM's {limit}")


if __name__ == "__main__":
    main()
