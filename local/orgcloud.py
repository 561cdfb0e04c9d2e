"""The local cloud with an organization (Organizations in moto): the hub is
the local cloud's own account (here also the organization's management
account) in its Region; two member accounts, in an organizational unit the
hub names (MemberOrganizationalUnits), get member.yaml through
CloudFormation in each of two Regions, as the service-managed StackSet
gives it to them (tests/test_member.py deploys it through moto's StackSets);
a third account, outside that unit, is listed in MemberAccounts without it
(not onboarded). team-b has instance scans (InstanceScans ON) with a subnet
in the hub's Region only: an AMI Inspector cannot read from its snapshots
is scanned on an instance there, and is NOT_SCANNABLE in its other Region
and in team-a.
Member accounts' events reach the hub's bus through their own rules and
the launcher's forwarding, with their `account` and `resources`; the hub
bus's policy is decided by the strict evaluator with each caller's
aws:PrincipalOrgID."""

import time

from localcloud import ACCOUNT, REGION, ROOT, SELECTION, LocalCloud

REGION2 = "eu-west-1"
HUB_BUS = "amiscan-hub"


class OrgCloud(LocalCloud):
    def __init__(self, **kwargs):
        kwargs.setdefault("scan_mode", "auto")
        super().__init__(**kwargs)

    def provision(self):
        org = self.client("organizations")
        self.org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
        root = org.list_roots()["Roots"][0]["Id"]
        self.ou = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]

        # team-b sits one unit further down: the hub lists units at any depth.
        deeper = org.create_organizational_unit(ParentId=self.ou, Name="team-b")["OrganizationalUnit"]["Id"]

        def account(name, unit):
            made = org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
            if unit:
                org.move_account(AccountId=made["AccountId"], SourceParentId=root, DestinationParentId=unit)
            return made["AccountId"]

        self.members = [account("team-a", self.ou), account("team-b", deeper)]
        self.team_b = self.members[1]
        self.not_onboarded = account("team-c", None)
        self.extra_parameters = {"OrganizationId": self.org_id, "HubEventBusName": HUB_BUS,
                                 "MemberOrganizationalUnits": self.ou, "MemberAccounts": self.not_onboarded,
                                 "ScanRegions": f"{REGION},{REGION2}"}
        super().provision()
        self.deploy_members()

    def hub_outputs(self):
        cfn, conditions, resolve = self.stack()
        return {name: resolve(out["Value"]) for name, out in cfn.get("Outputs", {}).items()
                if conditions.get(out.get("Condition"), True) and name in ("HubRoleArns", "HubEventBusName")}

    def deploy_members(self):
        """member.yaml in each member account and Region, as its StackSet
        instance: the role in the home Region, the rules in both."""
        outputs = self.hub_outputs()
        body = (ROOT / "member.yaml").read_text()
        parameters = {"HubAccountId": ACCOUNT, "HubRegion": REGION, "HubEventBusName": outputs["HubEventBusName"],
                      "HubRoleArns": outputs["HubRoleArns"], "HomeRegion": REGION}
        for account in self.members:
            credentials = self.administrator(account)
            for region in (REGION, REGION2):
                cfn = self.client("cloudformation", credentials, region)
                # team-b's StackSet instances: instance scans on, a subnet
                # (a per-Region override) in the hub's Region only.
                scans = {}
                if account == self.team_b:
                    scans = {"InstanceScans": "ON"}
                    if region == REGION:
                        subnet = self.client("ec2", credentials, region).describe_subnets()["Subnets"][0]
                        scans.update(SubnetId=subnet["SubnetId"], VpcId=subnet["VpcId"])
                        self.instance_places.append((account, region, outputs["HubEventBusName"]))
                cfn.create_stack(StackName="amiscan-member", TemplateBody=body, Capabilities=["CAPABILITY_NAMED_IAM"],
                                 Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                             for k, v in {**parameters, **scans}.items()])
                deadline = time.time() + 60
                while True:
                    status = cfn.describe_stacks(StackName="amiscan-member")["Stacks"][0]["StackStatus"]
                    if status.endswith("_COMPLETE") or time.time() > deadline:
                        break
                    time.sleep(0.2)
                assert status == "CREATE_COMPLETE", (account, region, status)

    # ------------------------------------------------------------ acting in members
    def member_client(self, service, account, region=REGION):
        return self.client(service, self.administrator(account), region)

    def seed_member_ami(self, account, region, name, tagged=True, announce=False):
        """An AMI of a member account in `region`; `announce` sends EC2's
        AMI-available event from that account and Region, as EC2 does."""
        ec2 = self.member_client("ec2", account, region)
        ami = ec2.register_image(Name=name, RootDeviceName="/dev/xvda",
                                 BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}])["ImageId"]
        if tagged:
            ec2.create_tags(Resources=[ami], Tags=[{"Key": SELECTION[0], "Value": SELECTION[1]}])
        if announce:
            self.put_events([{
                "Source": "aws.ec2", "DetailType": "EC2 AMI State Change",
                "Resources": [f"arn:aws:ec2:{region}::image/{ami}"],
                "Detail": {"RequestId": "0", "ImageId": ami, "State": "available", "ErrorMessage": ""},
            }], self.administrator(account), region)
        return ami

    def member_image_tags(self, account, region, ami_id):
        image = self.member_client("ec2", account, region).describe_images(ImageIds=[ami_id])["Images"][0]
        return {t["Key"]: t["Value"] for t in image.get("Tags", [])}

