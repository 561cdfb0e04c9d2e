"""The launch guardrail as IAM would receive it: the managed policy the stack
creates (LaunchGuardrail=FAIL or FAIL_OR_UNSCANNED), resolved from
template.yaml itself, and the same statements as a service control policy
for AWS Organizations.

    python local/guardrail.py --mode FAIL_OR_UNSCANNED            # the SCP
    python local/guardrail.py --policy --account 111122223333     # the managed policy
    python local/guardrail.py --stack amiscan --region eu-west-1  # the SCP of a deployed stack

With --stack, the account and amiscan's role ARNs come from the deployed
stack (boto3, your credentials); without, from --account and --*-role.

The SCP differs from the managed policy in two values only, so that one
document serves every account it is attached to: the AMI owner is the
calling principal's own account (`${aws:PrincipalAccount}`), and amiscan's
roles are matched by name in any account (`arn:aws:iam::*:role/<name>`).
"""

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[1]
POLICY = "LaunchGuardrailPolicy"
# IAM's limits: a managed policy counts characters without white space, an
# SCP counts every character.
MANAGED_POLICY_MAX = 6144
SCP_MAX = 5120


def template():
    parsed, matches = decode_str((ROOT / "template.yaml").read_text())
    assert not matches, matches
    return parsed


def evaluate(node, parameters, conditions, parsed):
    """A condition or rule expression (Fn::Equals, Not, And, Or, Condition,
    Ref, Split, Select) with these parameters (the template's defaults for
    the rest) and the conditions decided so far."""
    if not isinstance(node, dict):
        return node
    (fn, arg), = node.items()
    if fn == "Ref":
        return parameters.get(arg, parsed["Parameters"].get(arg, {}).get("Default"))
    if fn == "Condition":
        return conditions[arg]
    if fn == "Fn::Split":
        return evaluate(arg[1], parameters, conditions, parsed).split(arg[0])
    if fn == "Fn::Select":
        return evaluate(arg[1], parameters, conditions, parsed)[int(arg[0])]
    values = [evaluate(a, parameters, conditions, parsed) for a in arg]
    return {"Fn::Equals": lambda: values[0] == values[1], "Fn::Not": lambda: not values[0],
            "Fn::And": lambda: all(values), "Fn::Or": lambda: any(values)}[fn]()


def conditions_of(parsed, parameters):
    """Every condition of the template, decided for these parameters."""
    done = {}
    for name, expression in parsed["Conditions"].items():
        done[name] = evaluate(expression, parameters, done, parsed)
    return done


def substitute(node, names, conditions):
    """Fn::Sub, Fn::If, Ref and Fn::GetAtt over `names` (parameters, pseudo
    parameters and `Logical.Attribute` values), as CloudFormation resolves them."""
    if isinstance(node, str):
        return node
    (fn, arg), = node.items()
    if fn == "Fn::If":
        name, yes, no = arg
        return substitute(yes if conditions[name] else no, names, conditions)
    if fn == "Ref":
        return names[arg]
    if fn == "Fn::GetAtt":
        return names[".".join(arg) if isinstance(arg, list) else arg]
    if fn == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        local = {**names, **{k: substitute(v, names, conditions) for k, v in variables.items()}}

        def one(match):
            if match.group(0).startswith("${!"):
                return "${" + match.group(1)[1:] + "}"
            return local[match.group(1)]

        return re.sub(r"\$\{(!?[A-Za-z0-9_:.]+)\}", one, text)
    raise ValueError(f"cannot resolve {fn}")


def managed_policy(mode, account="123456789012", partition="aws", tag_prefix=None,
                   launch_role=None, tag_role=None, parsed=None):
    """The managed policy document the stack creates, as a dict."""
    parsed = parsed or template()
    parameters = {"LaunchGuardrail": mode}
    if tag_prefix is not None:
        parameters["TagPrefix"] = tag_prefix
    conditions = conditions_of(parsed, parameters)
    if not conditions[parsed["Resources"][POLICY]["Condition"]]:
        raise SystemExit(f"LaunchGuardrail={mode} creates no guardrail policy")
    role = f"arn:{partition}:iam::{account}:role/amiscan-%s-EXAMPLE"
    names = {
        "AWS::AccountId": account, "AWS::Partition": partition, "AWS::Region": "us-east-1",
        "AWS::StackName": "amiscan",
        "TagPrefix": parameters.get("TagPrefix", parsed["Parameters"]["TagPrefix"]["Default"]),
        "LaunchInstanceFunctionRole.Arn": launch_role or role % "LaunchInstanceFunctionRole",
        "TagAmiFunctionRole.Arn": tag_role or role % "TagAmiFunctionRole",
    }
    text = substitute(parsed["Resources"][POLICY]["Properties"]["PolicyDocument"], names, conditions)
    return json.loads(text)


def scp(policy, account):
    """The managed policy's statements as an SCP for every account of an organization."""
    document = json.loads(json.dumps(policy))
    for statement in document["Statement"]:
        condition = statement["Condition"]
        owner = condition.get("StringEquals", {})
        if owner.get("ec2:Owner") == account:
            owner["ec2:Owner"] = "${aws:PrincipalAccount}"
        principal = condition.pop("ArnNotEquals")["aws:PrincipalArn"]
        name = principal.split(":role/", 1)[1]
        condition["ArnNotLike"] = {"aws:PrincipalArn": f"arn:{principal.split(':')[1]}:iam::*:role/{name}"}
    return document


def denied_by(policy, action, principal, owner=None, tags=None, tag_keys=None):
    """The Sid of the first Deny statement that matches a request, or None:
    `action` on an image (its owner and tags as EC2 reports them) by
    `principal`, with the tag keys of a CreateTags/DeleteTags request (None
    when the request names none). A minimal evaluator of the operators the
    guardrail uses, to show and test its decisions where no emulator
    evaluates IAM conditions; it is not IAM's policy engine."""
    context = {"aws:PrincipalArn": principal, "ec2:Owner": owner,
               **{f"ec2:ResourceTag/{k}": v for k, v in (tags or {}).items()}}

    def holds(operator, key, expected):
        expected = expected if isinstance(expected, list) else [expected]
        if operator == "Null":
            absent = not tag_keys if key == "aws:TagKeys" else context.get(key) is None
            return absent == (expected == ["true"])
        if operator == "ForAnyValue:StringLike":
            return any(fnmatch.fnmatchcase(k, e) for k in tag_keys or [] for e in expected)
        value = context.get(key)
        if operator == "StringEquals":
            return value is not None and value in expected
        if operator == "ArnNotEquals":
            return value not in expected
        raise ValueError(f"the evaluator does not know {operator}")

    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Effect"] == "Deny" and action in actions and all(
                holds(op, key, expected) for op, pairs in statement["Condition"].items()
                for key, expected in pairs.items()):
            return statement["Sid"]
    return None


def managed_size(document):
    return len(re.sub(r"\s", "", json.dumps(document)))


def scp_text(document):
    return json.dumps(document, separators=(",", ":"))


def from_stack(stack, region):
    import boto3

    cfn = boto3.client("cloudformation", region_name=region)
    parameters = {p["ParameterKey"]: p["ParameterValue"]
                  for p in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])}
    roles = {r["LogicalResourceId"]: r["PhysicalResourceId"]
             for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]
             if r["ResourceType"] == "AWS::IAM::Role"}
    identity = boto3.client("sts", region_name=region).get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]
    arn = lambda logical: f"arn:{partition}:iam::{account}:role/{roles[logical]}"
    return dict(mode=parameters.get("LaunchGuardrail", "OFF"), account=account, partition=partition,
                tag_prefix=parameters.get("TagPrefix"), launch_role=arn("LaunchInstanceFunctionRole"),
                tag_role=arn("TagAmiFunctionRole"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="FAIL", choices=["FAIL", "FAIL_OR_UNSCANNED"])
    parser.add_argument("--policy", action="store_true", help="print the managed policy instead of the SCP")
    parser.add_argument("--account", default="123456789012")
    parser.add_argument("--partition", default="aws")
    parser.add_argument("--tag-prefix")
    parser.add_argument("--launch-role", help="ARN of amiscan's launch-instance role")
    parser.add_argument("--tag-role", help="ARN of amiscan's tag-ami role")
    parser.add_argument("--stack", help="read the values from this deployed stack")
    parser.add_argument("--region")
    args = parser.parse_args()
    values = from_stack(args.stack, args.region) if args.stack else dict(
        mode=args.mode, account=args.account, partition=args.partition, tag_prefix=args.tag_prefix,
        launch_role=args.launch_role, tag_role=args.tag_role)
    if values["mode"] == "OFF":
        raise SystemExit(f"stack {args.stack} has LaunchGuardrail=OFF: it creates no guardrail")
    policy = managed_policy(**values)
    if args.policy:
        print(json.dumps(policy, indent=2))
        size, limit = managed_size(policy), MANAGED_POLICY_MAX
    else:
        text = scp_text(scp(policy, values["account"]))
        print(text)
        size, limit = len(text), SCP_MAX
    print(f"{size} of {limit} characters", file=sys.stderr)
    if size > limit:
        raise SystemExit(f"the document is {size} characters, over IAM's {limit}")


if __name__ == "__main__":
    main()
