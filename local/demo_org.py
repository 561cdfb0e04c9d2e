"""`make demo-org`: one hub over an organization on the local cloud. The hub
and two member accounts (member.yaml in two Regions each), a third account
listed without it; one weekly run scans every AMI in its own account and
Region, the member accounts' events reach the hub's bus, and the results
land in one place. An AMI Inspector cannot read from its snapshots is
scanned on an instance in team-b's Region with a subnet, and is
NOT_SCANNABLE in team-a, which has none. Exits non-zero if a check fails."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localcloud import ACCOUNT, REGION, Behaviour, SnapshotBehaviour  # noqa: E402
from orgcloud import HUB_BUS, REGION2, OrgCloud  # noqa: E402

FAILING = [("CRITICAL", "CVE-2024-6387", "openssh-server"), ("HIGH", "CVE-2024-2511", "openssl")]
PASSING = [("MEDIUM", "CVE-2023-45853", "zlib1g")]
failures = []


def check(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def main():
    started = time.time()
    print("Starting the local cloud with an organization (the hub, two members, one account not onboarded)...")
    with OrgCloud(timeout_minutes=1) as org:
        team_a, team_b = org.members
        print(f"  organization {org.org_id}: hub {ACCOUNT}, members {team_a} and {team_b} "
              f"(member.yaml in {REGION} and {REGION2}), {org.not_onboarded} listed without it")
        amis = {
            (ACCOUNT, REGION, "hub-golden"): org.seed_ami("hub-golden"),
            (team_a, REGION, "team-a-golden"): org.seed_member_ami(team_a, REGION, "team-a-golden"),
            (team_a, REGION2, "team-a-golden-copy"): org.seed_member_ami(team_a, REGION2, "team-a-golden-copy"),
            (team_b, REGION2, "team-b-app"): org.seed_member_ami(team_b, REGION2, "team-b-app"),
            (team_b, REGION, "team-b-legacy"): org.seed_member_ami(team_b, REGION, "team-b-legacy"),
            (team_a, REGION, "team-a-legacy"): org.seed_member_ami(team_a, REGION, "team-a-legacy"),
        }
        unreadable = ("team-b-legacy", "team-a-legacy")
        for (_, _, name), ami in amis.items():
            behaviour = (SnapshotBehaviour("fail", reason="UNSUPPORTED_OS") if name in unreadable
                         else SnapshotBehaviour(findings=FAILING if name == "team-a-golden-copy" else PASSING))
            org.expect_snapshot(ami, behaviour)
        # team-b's Region with a subnet: Inspector scans the instance there.
        org.expect(amis[(team_b, REGION, "team-b-legacy")], Behaviour("scan", PASSING))
        print("\nThe weekly run (one find-amis over every account and Region)...")
        org.weekly_run()
        org.wait_for_runs()
        launches = org.wait_for_scans(list(amis.values()), seconds=300)
        check(all(e["status"] == "SUCCEEDED" for e in launches), f"{len(launches)} scans ended")

        print(f"\n  {'account':<13} {'Region':<10} {'AMI':<22} {'name':<19} {'verdict':<14} {'mode':<9} reported")
        for (account, region, name), ami in amis.items():
            tags = org.image_tags(ami) if account == ACCOUNT else org.member_image_tags(account, region, ami)
            summary, rows = org.report_of(ami)
            where = f"{summary['account_id']}/{summary['region']}" if summary else "-"
            verdict = tags.get("amiscan:verdict") or tags.get("amiscan:status")
            mode = tags.get("amiscan:scan-mode", "-")
            print(f"  {account:<13} {region:<10} {ami:<22} {name:<19} {verdict:<14} {mode:<9} {where}, {len(rows)} rows")
            expected = {"team-a-golden-copy": "FAIL", "team-a-legacy": "NOT_SCANNABLE"}.get(name, "PASS")
            check(verdict == expected, f"{name} is {expected}, tagged in its own account")
            if name == "team-b-legacy":
                check(mode == "instance", f"{name} was scanned on an instance in {account}/{region}")
            if name == "team-a-legacy":
                check(tags.get("amiscan:reason", "").endswith(f"no subnet for instance scans in {account}/{region}"),
                      f"{name} says why: no subnet for instance scans in {account}/{region}")
            if summary:
                check((summary["account_id"], summary["region"]) == (account, region),
                      f"{name}'s report in the hub's bucket names {account}/{region}")

        notes = org.notifications()
        runs = [n for n in notes if n["attributes"]["event_type"] == "SCAN_BATCH_STARTED"]
        print("\nThe run's alert:")
        for run in runs:
            print("  " + run["subject"])
            for line in run["message"].get("not_onboarded", []):
                print(f"  WARNING not onboarded: {line['account_id']}")
        check(any(r["message"].get("not_onboarded") for r in runs) and runs[0]["attributes"]["severity"] == "WARNING",
              f"{org.not_onboarded} is reported as not onboarded, with a WARNING")
        vulnerable = [n for n in notes if n["attributes"]["event_type"] == "AMI_VULNERABLE"]
        for note in vulnerable:
            print("  " + note["subject"])
        check(any(n["attributes"].get("account_id") == team_a for n in vulnerable),
              "the vulnerable member AMI's alert carries its account_id attribute")

        print("\nAn account outside the organization puts an event on the hub's bus...")
        outsider = org.client("events", org.administrator("999999999999"))
        try:
            outsider.put_events(Entries=[{"Source": "aws.inspector2", "DetailType": "Inspector2 OnDemand Scan Complete",
                                          "Detail": "{}", "EventBusName":
                                          f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{HUB_BUS}"}])
            check(False, "the hub's bus refuses an account outside the organization")
        except outsider.exceptions.ClientError as err:
            check(err.response["Error"]["Code"] == "AccessDeniedException",
                  f"the hub's bus refuses it ({err.response['Error']['Code']})")
    print(f"\n{len(failures)} checks failed" if failures else f"\nevery check passed in {time.time() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
