"""`make demo`: the whole workflow on the local cloud, as the weekly schedule
runs it, with a readable summary and checks. Exits non-zero if a check fails.
"""

import json
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localcloud import BUCKET, LAUNCH_MACHINE, ROOT, SELECTION, Behaviour, LocalCloud, SnapshotBehaviour  # noqa: E402
from query import DEFAULT_REPORTS, print_queries, table  # noqa: E402
import guardrail  # noqa: E402

UBUNTU_FINDINGS = [
    ("CRITICAL", "CVE-2024-6387", "openssh-server"),
    ("HIGH", "CVE-2024-2511", "openssl"),
    ("MEDIUM", "CVE-2023-45853", "zlib1g"),
]
WINDOWS_FINDINGS = [("HIGH", "CVE-2025-21298", "Windows OLE")]
AL2_FINDINGS = [("HIGH", "CVE-2024-2511", "openssl")]
# Scanned from their snapshots, no instance; al2 Inspector cannot read that
# way (UNSUPPORTED_OS), so auto scans it on an instance instead.
BY_SNAPSHOT = ("ubuntu", "al2023", "windows")


def seed(cloud):
    """Four tagged AMIs with different fates, and decoys find-amis must pass over."""
    amis = {
        "ubuntu": cloud.seed_ami("ubuntu-22.04-golden", "ubuntu/images"),
        "al2023": cloud.seed_ami("al2023-golden", "amzn2-ami"),
        "windows": cloud.seed_ami("windows-server-2022-golden", "Windows_Server-2016-English-Full-Base"),
        "al2": cloud.seed_ami("amazon-linux-2-legacy", "amzn2-ami"),
    }
    # Inspector's events arrive as EventBridge delivers them: at least once,
    # in any order.
    cloud.expect_snapshot(amis["ubuntu"], SnapshotBehaviour(findings=UBUNTU_FINDINGS, duplicate=True, shuffle=True))
    cloud.expect_snapshot(amis["al2023"], SnapshotBehaviour(findings=[]))
    cloud.expect_snapshot(amis["windows"], SnapshotBehaviour(findings=WINDOWS_FINDINGS))
    cloud.expect_snapshot(amis["al2"], SnapshotBehaviour("fail", reason="UNSUPPORTED_OS"))
    cloud.expect(amis["al2"], Behaviour("scan", AL2_FINDINGS))
    ec2 = cloud.client("ec2")
    decoys = {
        "untagged": cloud.seed_ami("untagged-build", "amzn2-ami", tagged=False),
        "disabled": cloud.seed_ami("tagged-but-disabled", "amzn2-ami"),
        "foreign": cloud.public_image("amzn-ami-hvm"),
    }
    ec2.disable_image(ImageId=decoys["disabled"])
    ec2.create_tags(Resources=[decoys["foreign"]], Tags=[{"Key": SELECTION[0], "Value": SELECTION[1]}])
    return amis, decoys


EXPECTED = {
    "ubuntu": {"amiscan:status": "COMPLETE", "amiscan:verdict": "FAIL", "amiscan:critical": "1", "amiscan:high": "1"},
    "al2023": {"amiscan:status": "COMPLETE", "amiscan:verdict": "PASS", "amiscan:critical": "0", "amiscan:findings": "0"},
    "windows": {"amiscan:status": "COMPLETE", "amiscan:verdict": "PASS", "amiscan:high": "1"},
    "al2": {"amiscan:status": "COMPLETE", "amiscan:verdict": "PASS", "amiscan:high": "1", "amiscan:scan-mode": "instance"},
}
for label in BY_SNAPSHOT:
    EXPECTED[label]["amiscan:scan-mode"] = "snapshot"
# Built after the weekly run and scanned as soon as it is available.
NEW_FINDINGS = [("CRITICAL", "CVE-2024-3094", "xz-utils")]
EXPECTED["new"] = {"amiscan:status": "COMPLETE", "amiscan:verdict": "FAIL", "amiscan:critical": "1",
                   "amiscan:scan-mode": "snapshot"}
DEVELOPER = "arn:aws:iam::123456789012:role/developer"


def check(cloud, amis, decoys, run):
    """Every check the demo promises; returns the failures."""
    failures = []
    started = {s["ami_id"] for s in run["started"]}
    weekly = {ami for label, ami in amis.items() if label != "new"}
    if started != weekly:
        failures.append(f"find-amis started {sorted(started)}, expected {sorted(weekly)}")
    if len([e for e in cloud.executions(LAUNCH_MACHINE) if e["name"].startswith(amis["new"])]) != 1:
        failures.append("the new AMI was not scanned exactly once on its creation event")
    skipped = {s["ami_id"]: s["reason"] for s in run["skipped"]}
    if "not available" not in skipped.get(decoys["disabled"], ""):
        failures.append(f"the disabled decoy was not skipped as unavailable: {skipped}")
    if decoys["untagged"] in started or decoys["foreign"] in started:
        failures.append("an untagged or foreign AMI was scanned")
    for label, ami in amis.items():
        tags = cloud.image_tags(ami)
        for key, value in EXPECTED[label].items():
            if tags.get(key) != value:
                failures.append(f"{label} {ami}: tag {key}={tags.get(key)!r}, expected {value!r}")
        if EXPECTED[label]["amiscan:status"] == "COMPLETE":
            summary, rows = cloud.report_of(ami)
            if summary is None:
                failures.append(f"{label}: no summary record in S3")
                continue
            if summary["finding_count"] != len(rows):
                failures.append(f"{label}: summary counts {summary['finding_count']} findings, data has {len(rows)}")
            if summary["report_key"]:
                csv_lines = cloud.read_object(summary["report_key"]).strip().splitlines()
                if len(csv_lines) != len(rows) + 1:
                    failures.append(f"{label}: CSV has {len(csv_lines) - 1} rows, expected {len(rows)}")
    for label in BY_SNAPSHOT:
        if cloud.scanner_instances_of(amis[label]):
            failures.append(f"{label} was scanned by snapshot, yet an instance was launched for it")
    fallback = cloud.scanner_instances_of(amis["al2"])
    if len(fallback) != 1 or fallback[0]["State"]["Name"] != "terminated":
        failures.append(f"al2 should have had one scan instance, now terminated: {fallback}")
    # Every scan ended: its report deleted what it staged, and start-scan what
    # an attempt without a report staged (al2's snapshot attempt before it
    # fell back to an instance).
    staged = cloud.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="staging/").get("Contents", [])
    if staged:
        failures.append(f"staged records left after every scan ended: {[o['Key'] for o in staged]}")
    live = cloud.live_scanner_instances()
    if live:
        failures.append(f"scanner instances left running: {[i['InstanceId'] for i in live]}")
    rules = cloud.scanner_rules()
    if rules:
        failures.append(f"scanner rules left: {rules}")
    if cloud.stand_in_errors:
        failures.append(f"the Inspector stand-in failed: {cloud.stand_in_errors[:3]}")
    return failures


def summary(cloud, amis, launches, started_at):
    print("\nScans")
    by_ami = {cloud.execution_input(e)["scan"]["ami_id"]: e for e in launches}
    rows = [("AMI", "name", "OS", "mode", "status", "verdict", "crit", "high", "med", "low", "report", "time")]
    for label, ami in amis.items():
        image, tags = cloud.image(ami), cloud.image_tags(ami)
        execution = by_ami.get(ami)
        took = ""
        if execution and tags.get("amiscan:status-at"):
            done = datetime.fromisoformat(tags["amiscan:status-at"].replace("Z", "+00:00"))
            took = f"{(done - execution['startDate']).total_seconds():.0f}s"
        report = tags.get("amiscan:report-uri", tags.get("amiscan:reason", "")).replace(f"s3://{BUCKET}/", "")
        rows.append((ami, image.get("Name", ""), image.get("PlatformDetails", image.get("Platform", "")),
                     tags.get("amiscan:scan-mode", "-"), tags.get("amiscan:status", "-"), tags.get("amiscan:verdict", "-"),
                     tags.get("amiscan:critical", "-"), tags.get("amiscan:high", "-"),
                     tags.get("amiscan:medium", "-"), tags.get("amiscan:low", "-"), report, took))
    print(table(rows[0], rows[1:]))
    print("\nSNS messages")
    rows = [("event_type", "severity", "subject")]
    for note in cloud.notifications():
        rows.append((note["attributes"].get("event_type"), note["attributes"].get("severity"), note["subject"]))
    print(table(rows[0], rows[1:]))
    keys = [o["Key"] for o in cloud.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    print(f"\nReports in s3://{BUCKET}/ (local emulator)")
    for key in sorted(keys):
        print(f"  {key}")
    print(f"\nWall time {time.time() - started_at:.0f}s; logs in {cloud.log_dir}")


def show_guardrail(cloud, amis, failures):
    """The AMIs a scan tagged FAIL beside the guardrail policy that keeps
    them from being launched (LaunchGuardrail=FAIL_OR_UNSCANNED, resolved
    from template.yaml), and what it decides for each."""
    policy = guardrail.managed_policy("FAIL_OR_UNSCANNED", account="123456789012",
                                      launch_role=cloud.names["LaunchInstanceFunctionRole.Arn"],
                                      tag_role=cloud.names["TagAmiFunctionRole.Arn"])
    print("\nLaunch guardrail (LaunchGuardrail=FAIL_OR_UNSCANNED): the policy the stack creates for you to attach")
    print(json.dumps(policy, indent=2))
    print(f"({guardrail.managed_size(policy)} of IAM's {guardrail.MANAGED_POLICY_MAX} characters; "
          "`make guardrail-scp` prints it as an SCP.) IAM's decisions, by the local cloud's evaluator "
          "(iam-simulate), for each AMI's owner and tags as EC2 reports them, the policy attached to a developer "
          "and the same statements as an SCP:")
    scp = guardrail.scp(policy, "123456789012")
    rows = [("AMI", "name", "verdict", f"RunInstances by {DEVELOPER.split(':')[-1]}", "CreateTags amiscan:verdict=PASS")]
    with guardrail.Evaluator() as iam:
        for label, ami in amis.items():
            tags, owner = cloud.image_tags(ami), cloud.image(ami)["OwnerId"]
            decide = lambda action, keys=None, as_scp=False: iam.denied_by(
                scp if as_scp else policy, action, DEVELOPER, owner, tags, keys, as_scp=as_scp)
            launch, launch_scp = decide("ec2:RunInstances"), decide("ec2:RunInstances", as_scp=True)
            retag = decide("ec2:CreateTags", ["amiscan:verdict"])
            rows.append((ami, cloud.image(ami).get("Name", ""), tags.get("amiscan:verdict", "(none)"),
                         f"DENIED ({launch})" if launch else "allowed", f"DENIED ({retag})" if retag else "allowed"))
            if (launch is not None) != (tags.get("amiscan:verdict") in ("FAIL", "INCOMPLETE", None)):
                failures.append(f"{label}: the guardrail decided {launch} for verdict {tags.get('amiscan:verdict')}")
            if (launch is None) != (launch_scp is None):
                failures.append(f"{label}: the policy decided {launch}, the SCP {launch_scp}")
            if retag is None:
                failures.append(f"{label}: the guardrail lets a person rewrite the verdict")
    print(table(rows[0], rows[1:]))


def show_email(cloud, ami, failures):
    """The Ubuntu AMI's AMI_VULNERABLE alert as the topic's email subscriber
    received it (SNS picks the `email` body of the per-protocol message)."""
    emails = [e for e in cloud.emails()
              if e["attributes"].get("event_type") == "AMI_VULNERABLE" and f"AMI: {ami}" in e["body"]]
    if not emails:
        failures.append(f"no AMI_VULNERABLE email for {ami}")
        return
    email = emails[-1]
    print(f"\nOne alert as the email subscriber ({email['to']}) reads it:")
    print("  " + "-" * 76)
    print(f"  Subject: {email['subject']}\n")
    print("\n".join("  " + line for line in email["body"].splitlines()))
    print("  " + "-" * 76)
    if email["body"].lstrip().startswith("{"):
        failures.append("the email body is JSON, not text")


def show_denials(cloud, failures):
    """What the local cloud refused during the run: nothing, on a good run."""
    denials = cloud.denials()
    timing = cloud.control("/authorization", {})
    print(f"\nIAM: {timing['calls']} requests authorized against their callers' policies "
          f"(median {timing.get('median_ms', 0):.1f} ms, p95 {timing.get('p95_ms', 0):.1f} ms each); "
          f"denials: {len(denials)}")
    for denial in denials:
        print(f"  DENIED {denial['caller']} {denial['action']} on {denial['resource']}")
        failures.append(f"the local cloud refused {denial['action']} to {denial['caller']}")


def main():
    started_at = time.time()
    print("Starting the local cloud (moto, IAM enforced on every call by iam-simulate, each function as its own role) "
          "on 127.0.0.1 ...", flush=True)
    with LocalCloud(timeout_minutes=1, scan_mode="auto") as cloud:
        amis, decoys = seed(cloud)
        print(f"Seeded {len(amis)} tagged AMIs and {len(decoys)} decoys; invoking find-amis as the weekly schedule does.", flush=True)
        scheduled = json.loads((ROOT / "events/find-amis/scheduled.json").read_text())
        run = cloud.find_amis(scheduled)
        print(f"find-amis: found {run['found']}, started {len(run['started'])}, skipped {len(run['skipped'])}", flush=True)
        for skip in run["skipped"]:
            print(f"  skipped {skip['ami_id']}: {skip['reason']}")
        print("ScanMode auto: playing Inspector's snapshot scans (events duplicated and shuffled); "
              "the Amazon Linux 2 AMI cannot be read that way and falls back to an instance scan ...", flush=True)
        cloud.wait_for_executions(len(run["started"]), 300)
        amis["new"] = cloud.seed_ami("ubuntu-24.04-golden-rc1", "ubuntu/images")
        cloud.expect_snapshot(amis["new"], SnapshotBehaviour(findings=NEW_FINDINGS))
        print(f"A pipeline built {amis['new']} (tagged) after the weekly run: EC2 announces it available, "
              "and ScanOnCreate=TAGGED scans it through the runs queue, with no schedule ...", flush=True)
        cloud.announce([amis["new"]])
        cloud.wait_for_runs()
        launches, _ = cloud.wait_for_executions(len(run["started"]) + 1, 300)
        launches = [e for e in launches if e["stateMachineArn"].endswith(LAUNCH_MACHINE)]
        summary(cloud, amis, launches, started_at)
        failures = check(cloud, amis, decoys, run)
        show_email(cloud, amis["ubuntu"], failures)
        show_guardrail(cloud, amis, failures)
        show_denials(cloud, failures)
        saved = cloud.save_reports(DEFAULT_REPORTS)
    print("\nStopped everything the demo started.")
    print(f"\nSaved the Athena data ({len(saved)} objects) to {DEFAULT_REPORTS.relative_to(ROOT)}; "
          "the first two named queries, run in DuckDB as Athena would run them (make query runs all nine):")
    try:
        print_queries(DEFAULT_REPORTS, ["01-", "02-"])
    except Exception as err:  # a broken query is a failed check, not a crash
        failures.append(f"the named queries did not run over the saved reports: {err}")
    if failures:
        print("\nCHECKS FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("All checks passed: every tagged AMI accounted for, reports parse, tags right, nothing left running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
