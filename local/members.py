"""member.yaml into an organization's accounts: creates or updates the
service-managed StackSet `<hub stack>-members` with the hub's outputs as its
parameters, deploys it to the given OUs in the given Regions (automatic
deployment to accounts that join them later), and prints which accounts and
Regions have it.

    python local/members.py --hub-stack amiscan --hub-region eu-west-1 \\
        --ous ou-ab12-cdef3456 --regions eu-west-1,us-east-1

Run it in the organization's management account, or in a CloudFormation
delegated administrator with --delegated-admin. The first Region is the home
Region (the account-wide roles), unless --home-region says otherwise. A
service-managed StackSet never deploys to the management account itself.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hub_parameters(cfn, stack):
    """member.yaml's parameters from the hub stack's outputs; SystemExit when
    the hub was deployed without OrganizationId."""
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = [k for k in ("HubEventBusName", "HubRoleArns") if k not in outputs]
    if missing:
        raise SystemExit(f"stack {stack} has no {' or '.join(missing)} output: deploy the hub with OrganizationId first")
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}
    account = described["StackId"].split(":")[4]
    return {"HubAccountId": account, "HubEventBusName": outputs["HubEventBusName"],
            "HubRoleArns": outputs["HubRoleArns"], "TagPrefix": parameters.get("TagPrefix", "amiscan:")}


def wait(cfn, name, operation, call_as, seconds=3600):
    """Until a StackSet operation ends (one runs at a time per StackSet);
    SystemExit when it did not succeed."""
    deadline = time.time() + seconds
    while True:
        status = cfn.describe_stack_set_operation(StackSetName=name, OperationId=operation,
                                                  CallAs=call_as)["StackSetOperation"]["Status"]
        if status == "SUCCEEDED":
            return
        if status in ("FAILED", "STOPPED") or time.time() > deadline:
            raise SystemExit(f"StackSet {name}: operation {operation} {status.lower()}; see its results")
        time.sleep(10)


def deploy(cfn, name, hub, region, ous, regions, home_region=None, instance_scans="OFF", call_as="SELF",
           guardrail="OFF"):
    """Creates or updates the StackSet and its instances; returns the
    (account, Region, status) of every instance."""
    parameters = {**hub, "HubRegion": region, "HomeRegion": home_region or regions[0], "InstanceScans": instance_scans,
                  "LaunchGuardrail": guardrail}
    if parameters["HomeRegion"] not in regions:
        raise SystemExit(f"the home Region {parameters['HomeRegion']} is not one of the Regions {regions}")
    settings = dict(StackSetName=name, TemplateBody=(ROOT / "member.yaml").read_text(),
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                    Capabilities=["CAPABILITY_NAMED_IAM"], CallAs=call_as)
    existing = {s["StackSetName"] for s in cfn.list_stack_sets(Status="ACTIVE", CallAs=call_as)["Summaries"]}
    if name in existing:
        operation = cfn.update_stack_set(**settings, PermissionModel="SERVICE_MANAGED",
                                         AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False})
        wait(cfn, name, operation["OperationId"], call_as)
    else:
        cfn.create_stack_set(**settings, PermissionModel="SERVICE_MANAGED",
                             AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False})
    # New OUs or Regions get instances; the update above reached the others.
    have = {(i.get("OrganizationalUnitId"), i["Region"])
            for i in cfn.list_stack_instances(StackSetName=name, CallAs=call_as)["Summaries"]}
    for region in regions:
        wanted = [ou for ou in ous if (ou, region) not in have]
        if wanted:
            operation = cfn.create_stack_instances(StackSetName=name, DeploymentTargets={"OrganizationalUnitIds": wanted},
                                                   Regions=[region], CallAs=call_as)
            wait(cfn, name, operation["OperationId"], call_as)
    instances = cfn.list_stack_instances(StackSetName=name, CallAs=call_as)["Summaries"]
    return sorted((i["Account"], i["Region"], i.get("StackInstanceStatus", {}).get("DetailedStatus", i["Status"]))
                  for i in instances)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub-stack", default="amiscan")
    parser.add_argument("--hub-region", required=True)
    parser.add_argument("--ous", required=True, help="comma-separated OU ids")
    parser.add_argument("--regions", required=True, help="comma-separated Regions; the first is the home Region")
    parser.add_argument("--home-region")
    parser.add_argument("--instance-scans", choices=["ON", "OFF"], default="OFF")
    parser.add_argument("--delegated-admin", action="store_true")
    parser.add_argument("--guardrail", choices=["OFF", "FAIL", "FAIL_OR_UNSCANNED"], default="OFF",
                        help="member.yaml's LaunchGuardrail in every account")
    args = parser.parse_args()
    import boto3

    cfn = boto3.client("cloudformation", region_name=args.hub_region)
    hub = hub_parameters(cfn, args.hub_stack)
    rows = deploy(cfn, f"{args.hub_stack}-members", hub, args.hub_region, args.ous.split(","),
                  args.regions.split(","), args.home_region, args.instance_scans,
                  "DELEGATED_ADMIN" if args.delegated_admin else "SELF", args.guardrail)
    for account, region, status in rows:
        print(f"{account}  {region:<16} {status}")
    print(f"{len({a for a, _, _ in rows})} accounts, {len({r for _, r, _ in rows})} Regions", file=sys.stderr)


if __name__ == "__main__":
    main()
