"""End-to-end scenarios of accepted risks and of what changed since the last
scan: the real ASL and Lambdas on the local cloud (snapshot mode, the quickest
to play), with `config/exceptions.json` written to the report bucket as a
user would upload it.

Every scenario is judged on what the emulator holds afterwards: the summary
record and finding rows in S3, the AMI's tags, the alerts on the topic (the
JSON every protocol but email receives) and what the email subscriber got.
"""

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from localcloud import BUCKET, LocalCloud, SnapshotBehaviour  # noqa: E402

TODAY = datetime.now(timezone.utc).date()
OPENSSH = ("CRITICAL", "CVE-2024-6387", "openssh-server")
OPENSSL = ("HIGH", "CVE-2024-2511", "openssl")
ZLIB = ("MEDIUM", "CVE-2023-45853", "zlib1g")


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud(timeout_minutes=1, scan_mode="snapshot") as local:
        yield local


def put_exceptions(cloud, document):
    body = document if isinstance(document, str) else json.dumps(document)
    cloud.client("s3").put_object(Bucket=BUCKET, Key="config/exceptions.json", Body=body.encode())


def scan(cloud, ami, findings, force=False):
    """One scan of `ami` with these findings, to its end; its summary, rows and alerts."""
    cloud.expect_snapshot(ami, SnapshotBehaviour("scan", findings))
    cloud.notifications()
    out = cloud.find_amis({"ami_ids": [ami], "force": force})
    assert len(out["started"]) == 1, out
    (launch,) = [e for e in cloud.wait_for_scans([ami]) if e["name"] == out["started"][0]["scan_id"]]
    assert launch["status"] == "SUCCEEDED", launch
    summary, rows = cloud.report_of(ami)
    assert summary["scan_id"] == out["started"][0]["scan_id"], "this scan is the AMI's latest"
    alerts = [n for n in cloud.notifications() if n["message"].get("ami_id") == ami]
    return summary, rows, alerts


def kinds(alerts):
    """The result alerts' event types (the start is announced in every scan)."""
    return sorted(a["attributes"]["event_type"] for a in alerts if a["attributes"]["event_type"] != "SCAN_STARTED")


def test_two_scans_of_one_ami_give_what_is_new_fixed_and_still_open(cloud):
    put_exceptions(cloud, {"exceptions": []})
    ami = cloud.seed_ami("delta-golden", "ubuntu")
    first, rows, alerts = scan(cloud, ami, [OPENSSH, OPENSSL])
    assert (first["verdict"], first["first_scan"], first["new_count"]) == ("FAIL", True, 2)
    assert all(r["is_new"] for r in rows), "every finding of a first scan is new"
    assert "AMI_VULNERABLE" in kinds(alerts), "a first FAIL is new"
    assert first["delta"] == "first scan of this AMI: 2 open vulnerabilities"

    second, rows, alerts = scan(cloud, ami, [OPENSSH, ZLIB], force=True)
    assert second["previous_scan_id"] == first["scan_id"] and second["first_scan"] is False
    vuln = lambda l: [(v["vulnerability_id"], v["package"], v["severity"]) for v in l]
    assert vuln(second["new"]) == [("CVE-2023-45853", "zlib1g", "MEDIUM")]
    assert vuln(second["fixed"]) == [("CVE-2024-2511", "openssl", "HIGH")]
    assert vuln(second["still_open"]) == [("CVE-2024-6387", "openssh-server", "CRITICAL")]
    assert (second["new_count"], second["fixed_count"], second["still_open_count"]) == (1, 1, 1)
    assert second["delta"] == "1 new: CVE-2023-45853 (MEDIUM); 1 fixed; 1 still open"
    assert {r["vulnerability_id"]: r["is_new"] for r in rows} == {"CVE-2024-6387": False, "CVE-2023-45853": True}
    # Still FAIL (the critical one is still open), but nothing new reaches
    # CRITICAL: AlertOn=NEW announces the scan instead of alerting.
    assert second["verdict"] == "FAIL" and second["alert"] is False
    assert kinds(alerts) == ["SCAN_COMPLETED"], kinds(alerts)
    # The email subscriber reads plain text that leads with what is new.
    (email,) = [e for e in cloud.emails() if second["scan_id"] in e["body"]
                and e["attributes"]["event_type"] == "SCAN_COMPLETED"]
    assert email["body"].startswith(f"amiscan scanned {ami}.")
    assert "Since the previous scan: 1 new: CVE-2023-45853 (MEDIUM); 1 fixed; 1 still open" in email["body"]
    assert second["report_uri"] in email["body"] and "amiscan-new-since-previous-scan" in email["body"]
    assert not email["body"].lstrip().startswith("{"), "email gets text, not JSON"
    assert cloud.image_tags(ami)["amiscan:verdict"] == "FAIL"


def test_an_exception_turns_a_fail_into_a_pass_and_back_once_it_expires(cloud):
    ami = cloud.seed_ami("accepted-risk", "ubuntu")
    name = cloud.image(ami)["Name"]
    put_exceptions(cloud, {"exceptions": [{
        "vulnerability_id": "CVE-2024-6387", "ami": name[:8] + "*", "package": "openssh-server",
        "reason": "mitigated by LoginGraceTime=0 until the next build", "expires": str(TODAY),
        "owner": "platform@example.com"}]})
    summary, rows, alerts = scan(cloud, ami, [OPENSSH, ZLIB])
    assert (summary["verdict"], summary["critical"], summary["excepted"]) == ("PASS", 0, 1), summary
    # The summary says which version of the file judged it, and who accepted the risk.
    head = cloud.client("s3").head_object(Bucket=BUCKET, Key="config/exceptions.json")
    assert (summary["exceptions_version_id"], summary["exceptions_etag"]) == (head["VersionId"], head["ETag"])
    assert summary["exception_owners"] == ["platform@example.com"]
    row = next(r for r in rows if r["vulnerability_id"] == "CVE-2024-6387")
    assert (row["exception_reason"], row["exception_expires"]) == (
        "mitigated by LoginGraceTime=0 until the next build", str(TODAY))
    assert next(r for r in rows if r["vulnerability_id"] == "CVE-2023-45853")["exception_reason"] is None
    tags = cloud.image_tags(ami)
    assert (tags["amiscan:verdict"], tags["amiscan:excepted"], tags["amiscan:critical"]) == ("PASS", "1", "0")
    assert "AMI_VULNERABLE" not in kinds(alerts)

    # Its last day was yesterday: the finding counts again.
    put_exceptions(cloud, {"exceptions": [{
        "vulnerability_id": "CVE-2024-6387", "package": "openssh-server", "reason": "expired",
        "expires": str(TODAY - timedelta(days=1)), "owner": "platform@example.com"}]})
    summary, rows, alerts = scan(cloud, ami, [OPENSSH, ZLIB], force=True)
    assert (summary["verdict"], summary["critical"], summary["excepted"]) == ("FAIL", 1, 0), summary
    assert all(r["exception_reason"] is None for r in rows)
    assert cloud.image_tags(ami)["amiscan:excepted"] == "0"


def test_an_invalid_exceptions_file_applies_no_exception_and_is_reported(cloud):
    ami = cloud.seed_ami("broken-file", "ubuntu")
    # It would accept the critical finding, but it has no reason.
    put_exceptions(cloud, {"exceptions": [
        {"vulnerability_id": "CVE-2024-6387", "reason": "fine", "expires": str(TODAY), "owner": "a@example.com"},
        {"vulnerability_id": "CVE-2024-6387", "expires": str(TODAY), "owner": "a@example.com"}]})
    summary, rows, alerts = scan(cloud, ami, [OPENSSH])
    assert (summary["verdict"], summary["excepted"]) == ("FAIL", 0)
    assert summary["exceptions_error"] == (
        f"s3://{BUCKET}/config/exceptions.json: exceptions[1].reason: is required"), summary
    assert all(r["exception_reason"] is None for r in rows)
    (vulnerable,) = [a for a in alerts if a["attributes"]["event_type"] == "AMI_VULNERABLE"]
    assert vulnerable["message"]["exceptions_error"] == summary["exceptions_error"]
    (email,) = [e for e in cloud.emails() if summary["scan_id"] in e["body"]
                and e["attributes"]["event_type"] == "AMI_VULNERABLE"]
    assert "Exceptions NOT applied, the file is invalid: " in email["body"] and "exceptions[1].reason" in email["body"]
    # The weekly run's summary says so too.
    run = cloud.find_amis({"ami_ids": [ami]})
    assert run["exceptions_error"] == summary["exceptions_error"]
    put_exceptions(cloud, {"exceptions": []})
