"""The Athena side: Glue tables, workgroup and named queries in template.yaml,
the queries in queries/*.sql, and those queries run in DuckDB over reports the
local end-to-end run wrote from findings seeded here, row for row."""

import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from athena_local import TABLES, connect, duckdb_type, glue_tables, queries, run  # noqa: E402
from localcloud import ROOT, Behaviour, LocalCloud, SnapshotBehaviour, template  # noqa: E402

QUERY_FILES = queries()


@pytest.fixture(scope="module")
def parsed():
    return template()


def resources_of(parsed, kind):
    return {k: r["Properties"] for k, r in parsed["Resources"].items() if r["Type"] == kind}


# ---------------------------------------------------------------- template and files


def test_the_template_carries_every_query_file_unchanged(parsed):
    named = resources_of(parsed, "AWS::Athena::NamedQuery")
    assert len(QUERY_FILES) >= 9 and len(named) == len(QUERY_FILES), (sorted(named), QUERY_FILES)
    by_name = {props["Name"]: (logical, props) for logical, props in named.items()}
    for query in QUERY_FILES:
        assert query.name in by_name, f"{query.path.name}: no AWS::Athena::NamedQuery named {query.name}"
        logical, props = by_name[query.name]
        assert props["QueryString"] == query.sql, f"{logical} differs from queries/{query.path.name}"
        assert props["Description"] == query.description, logical
        assert props["Database"] == {"Ref": "AthenaDatabase"}, logical
        assert props["WorkGroup"] == {"Ref": "AthenaWorkGroup"}, logical


# Functions (sqlglot's names for them) that Athena engine v3 and DuckDB both
# have with the same meaning. sqlglot's Trino parser accepts any function
# name, so a function outside this list fails the check until someone has
# confirmed it in both engines' documentation and added it here.
SHARED_FUNCTIONS = {
    "And", "Or", "Not", "Case", "If", "Coalesce", "Count", "Max", "Min", "Sum", "Avg", "ArgMax", "ArgMin",
    "LogicalOr", "LogicalAnd", "RowNumber", "Rank", "CurrentDate", "DateDiff", "Lower", "Upper",
}


def trino_problems(sql):
    """Why Athena would refuse `sql`, as far as parsing can tell; [] if nothing."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino", error_level=ErrorLevel.RAISE) if s is not None]
    except sqlglot.errors.ParseError as err:
        return [f"does not parse as Trino: {err}"]
    if len(statements) != 1:
        return [f"{len(statements)} statements; a named query holds one"]
    tree, problems = statements[0], []
    if not isinstance(tree, exp.Select):
        problems.append(f"not a SELECT but {type(tree).__name__}")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    tables = {t.name for t in tree.find_all(exp.Table)} - ctes
    if not tables or not tables <= set(TABLES):
        problems.append(f"reads {sorted(tables)}, not only {sorted(TABLES)}")
    for func in tree.find_all(exp.Func):
        name = func.name if isinstance(func, exp.Anonymous) else type(func).__name__
        if isinstance(func, exp.Anonymous) or name not in SHARED_FUNCTIONS:
            problems.append(f"function {func.sql(dialect='trino')[:40]!r} is not known to both Athena and DuckDB")
    return problems


@pytest.mark.parametrize("query", QUERY_FILES, ids=str)
def test_every_query_parses_as_trino_and_reads_only_the_two_tables(query):
    assert trino_problems(query.sql) == [], query


@pytest.mark.parametrize("sql", [
    "SELECT ami_id FROM scans QUALIFY row_number() OVER (PARTITION BY ami_id) = 1",  # DuckDB only
    "SELECT list_sort(array_agg(ami_id)) FROM scans",  # DuckDB's name; Trino's is array_sort
    "SELECT strftime(scanned_at, '%Y') FROM scans",  # DuckDB's name; Trino's is date_format
    "SELECT ami_id FROM scans; SELECT 1",
    "DROP TABLE scans",
    "SELECT * FROM information_schema.tables",
])
def test_the_trino_check_rejects_what_athena_would(sql):
    assert trino_problems(sql), sql


def test_the_tables_project_their_partitions_and_type_every_column(parsed):
    tables = resources_of(parsed, "AWS::Glue::Table")
    assert set(tables) == set(TABLES.values())
    for name, logical in TABLES.items():
        table = tables[logical]["TableInput"]
        params = table["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.scan_date.type"] == "date"
        assert params["projection.scan_date.format"] == "yyyy-MM-dd"
        assert params["projection.scan_date.range"] == {"Fn::Sub": "NOW-${ReportRetentionDays}DAYS,NOW"}
        assert params["storage.location.template"] == {"Fn::Sub": f"s3://${{ReportBucket}}/{name}/scan_date=${{!scan_date}}/"}
        assert table["PartitionKeys"][0]["Name"] == "scan_date" and table["PartitionKeys"][0]["Type"] == "date"
        serde = table["StorageDescriptor"]["SerdeInfo"]
        assert serde["SerializationLibrary"] == "org.apache.hive.hcatalog.data.JsonSerDe"
        assert serde["Parameters"]["timestamp.formats"] == "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
        for column in table["StorageDescriptor"]["Columns"]:
            assert duckdb_type(column["Type"]), column
            kind, col = column["Type"], column["Name"]
            if col.endswith("_at"):
                assert kind == "timestamp", column
            if col.endswith(("_score",)):
                assert kind == "double", column
            if col.endswith("_count") or col in ("critical", "high", "medium", "low", "informational", "untriaged"):
                assert kind == "bigint", column
            if col == "exploit_available":
                assert kind == "boolean", column
    # The report keys the Rust side writes are what the tables read.
    report_rs = (ROOT / "crates/core/src/report/mod.rs").read_text()
    assert 'FINDINGS_PREFIX: &str = "findings/"' in report_rs and 'SCANS_PREFIX: &str = "scans/"' in report_rs
    assert "scan_date={day}" in report_rs


def test_the_workgroup_enforces_encrypted_results_in_the_report_bucket(parsed):
    (group,) = resources_of(parsed, "AWS::Athena::WorkGroup").values()
    config = group["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"
    result = config["ResultConfiguration"]
    assert result["OutputLocation"] == {"Fn::Sub": "s3://${ReportBucket}/athena-results/"}
    assert result["EncryptionConfiguration"] == {"EncryptionOption": "SSE_KMS", "KmsKey": {"Fn::GetAtt": ["Key", "Arn"]}}
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    rules = parsed["Resources"]["ReportBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "athena-results/" and r["ExpirationInDays"] <= 30 for r in rules)


# ---------------------------------------------------------------- the queries on real reports

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TODAY = NOW.date()
A_WEEK_AGO = NOW - timedelta(days=8)      # the golden image's previous scan
TEN_DAYS_AGO = NOW - timedelta(days=10)   # an image no longer in the weekly run
IN_TEN_DAYS = TODAY + timedelta(days=10)  # when the accepted risk expires


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two find-amis runs on the local cloud. The first, filed by Inspector's
    event a week and more ago, scans all three AMIs; the second, now,
    re-scans (forced) `golden`, which got worse, and `patched`, which got
    better. `retired` is left out of the second run."""
    with LocalCloud(timeout_minutes=1) as cloud:
        cloud.start_functions()
        amis = {
            "golden": cloud.seed_ami("q-golden", "ubuntu/images"),
            "patched": cloud.seed_ami("q-patched", "amzn2-ami"),
            "retired": cloud.seed_ami("q-retired", "amzn2-ami"),
        }
        cloud.expect(amis["golden"], Behaviour("scan", [("HIGH", "CVE-2024-2511", "openssl")], scanned_at=A_WEEK_AGO))
        cloud.expect(amis["patched"], Behaviour(
            "scan", [("CRITICAL", "CVE-2024-6387", "openssh-server")], scanned_at=A_WEEK_AGO))
        cloud.expect(amis["retired"], Behaviour(
            "scan", [("HIGH", "CVE-2021-44228", "log4j-core", "YES", "YES")], scanned_at=TEN_DAYS_AGO))
        first = cloud.find_amis({"ami_ids": list(amis.values())})
        cloud.wait_for_executions(3, 300)
        cloud.expect(amis["golden"], Behaviour("scan", [
            ("CRITICAL", "CVE-2024-6387", "openssh-server"),
            ("HIGH", "CVE-2024-2511", "openssl"),
            ("MEDIUM", "CVE-2023-45853", "zlib1g", "NO", "NO"),
        ]))
        cloud.expect(amis["patched"], Behaviour("scan", [
            ("HIGH", "CVE-2024-2511", "openssl", "PARTIAL", "NO"),
            ("LOW", "CVE-2023-1111", "bash", "NO", "YES"),
        ]))
        rescan = json.loads((ROOT / "events/find-amis/rescan-today.json").read_text())
        second = cloud.find_amis({**rescan, "ami_ids": [amis["golden"], amis["patched"]]})
        cloud.wait_for_executions(5, 300)
        assert len(first["started"]) == 3 and len(second["started"]) == 2, (first, second)
        assert not cloud.stand_in_errors, cloud.stand_in_errors
        directory = tmp_path_factory.mktemp("reports")
        keys = cloud.save_reports(directory)
        names = {label: cloud.image(ami)["Name"] for label, ami in amis.items()}
        # Then snapshot scans (ScanMode auto): one loses a finding event on
        # the way, Inspector cannot read the other one's snapshots.
        cloud.start_functions(SCAN_MODE="auto")
        snapshots = {"partial": cloud.seed_ami("q-partial", "ubuntu/images"),
                     "unreadable": cloud.seed_ami("q-unreadable", "ubuntu/images")}
        cloud.expect_snapshot(snapshots["partial"], SnapshotBehaviour(
            findings=[("HIGH", "CVE-2024-2511", "openssl"), ("LOW", "CVE-2023-1111", "bash")], lose_findings=1))
        cloud.expect_snapshot(snapshots["unreadable"], SnapshotBehaviour("fail", reason="ACCESS_DENIED"))
        third = cloud.find_amis({"ami_ids": list(snapshots.values())})
        cloud.wait_for_executions(7, 300)
        assert len(third["started"]) == 2 and not cloud.stand_in_errors, (third, cloud.stand_in_errors)
        with_snapshots = tmp_path_factory.mktemp("reports-with-snapshots")
        cloud.save_reports(with_snapshots)
        # Then an accepted risk: an exception for openssl on q-accepted*.
        cloud.client("s3").put_object(Bucket="amiscan-reports-local", Key="config/exceptions.json", Body=json.dumps(
            {"exceptions": [{"vulnerability_id": "CVE-2024-2511", "ami": "q-accepted*", "package": "openssl",
                             "reason": "no TLS listener in this image", "expires": str(IN_TEN_DAYS),
                             "owner": "platform@example.com"}]}).encode())
        accepted = cloud.seed_ami("q-accepted", "ubuntu/images")
        cloud.expect_snapshot(accepted, SnapshotBehaviour(
            findings=[("HIGH", "CVE-2024-2511", "openssl"), ("LOW", "CVE-2023-1111", "bash")]))
        fourth = cloud.find_amis({"ami_ids": [accepted]})
        cloud.wait_for_executions(8, 300)
        assert len(fourth["started"]) == 1 and not cloud.stand_in_errors, (fourth, cloud.stand_in_errors)
        with_exceptions = tmp_path_factory.mktemp("reports-with-exceptions")
        cloud.save_reports(with_exceptions)
    return {"dir": directory, "keys": keys, "amis": amis, "names": names, "with_snapshots": with_snapshots,
            "snapshots": snapshots, "with_exceptions": with_exceptions, "accepted": accepted}


def results(reports, prefix, directory="dir"):
    (query,) = [q for q in QUERY_FILES if q.path.name.startswith(prefix)]
    columns, rows = run(connect(reports[directory]), query)
    return [dict(zip(columns, row)) for row in rows]


def pick(rows, *columns):
    return [tuple(r[c] for c in columns) for r in rows]


def test_the_reports_hold_exactly_the_glue_columns_in_the_projected_layout(reports):
    keys = reports["keys"]
    assert len([k for k in keys if k.startswith("scans/")]) == 5
    assert {re.match(r"scans/scan_date=(\d{4}-\d{2}-\d{2})/", k).group(1) for k in keys if k.startswith("scans/")} == {
        str(A_WEEK_AGO.date()), str(TEN_DAYS_AGO.date()), str(TODAY)}
    for table, (columns, _) in glue_tables().items():
        files = list((reports["dir"] / table).glob("scan_date=*/*"))
        assert files, table
        for path in files:
            for line in path.read_text().splitlines():
                assert sorted(json.loads(line)) == sorted(c for c, _ in columns), (table, path.name)


def test_query_1_returns_exactly_the_ami_whose_latest_scan_has_a_critical_finding(reports):
    golden = reports["amis"]["golden"]
    rows = results(reports, "01")
    assert pick(rows, "ami_id", "ami_name", "scan_date", "highest_severity", "severity_threshold",
                "critical", "high", "medium", "low", "finding_count") == [
        (golden, "q-golden", TODAY, "CRITICAL", "CRITICAL", 1, 1, 1, 0, 3)]
    assert rows[0]["scan_id"].startswith(f"{golden}-") and "-r" in rows[0]["scan_id"], "the forced re-scan is the latest"


def test_query_2_counts_each_cve_once_per_ami_over_latest_scans_only(reports):
    assert pick(results(reports, "02"), "vulnerability_id", "severity", "inspector_score", "ami_count",
                "finding_count", "exploit_available") == [
        ("CVE-2024-2511", "HIGH", 7.5, 2, 2, False),
        ("CVE-2024-6387", "CRITICAL", 9.8, 1, 1, True),
        ("CVE-2021-44228", "HIGH", 7.5, 1, 1, True),
        ("CVE-2023-45853", "MEDIUM", 5.0, 1, 1, False),
        ("CVE-2023-1111", "LOW", 2.0, 1, 1, True),
    ]


def test_query_3_lists_fixable_findings_per_ami_with_the_fixed_in_version(reports):
    amis = reports["amis"]
    expected = sorted([
        (amis["golden"], "CRITICAL", "CVE-2024-6387", "openssh-server", "1.0.0-1", "1.0.1-1", "YES"),
        (amis["golden"], "HIGH", "CVE-2024-2511", "openssl", "1.0.0-1", "1.0.1-1", "YES"),
        (amis["patched"], "HIGH", "CVE-2024-2511", "openssl", "1.0.0-1", "1.0.1-1", "PARTIAL"),
        (amis["retired"], "HIGH", "CVE-2021-44228", "log4j-core", "1.0.0-1", "1.0.1-1", "YES"),
    ], key=lambda r: (r[0], r[1] != "CRITICAL", r[2]))
    assert pick(results(reports, "03"), "ami_id", "severity", "vulnerability_id", "package_name",
                "installed_version", "fixed_in_version", "fix_available") == expected


def test_query_4_lists_findings_with_a_known_exploit(reports):
    amis = reports["amis"]
    assert pick(results(reports, "04"), "ami_id", "severity", "vulnerability_id", "package_name",
                "epss_score", "inspector_score", "fix_available", "fixed_in_version") == [
        (amis["golden"], "CRITICAL", "CVE-2024-6387", "openssh-server", 0.3, 9.8, "YES", "1.0.1-1"),
        (amis["retired"], "HIGH", "CVE-2021-44228", "log4j-core", 0.3, 7.5, "YES", "1.0.1-1"),
        (amis["patched"], "LOW", "CVE-2023-1111", "bash", 0.3, 2.0, "NO", None),
    ]


def test_query_5_shows_two_scan_dates_for_each_ami_scanned_twice(reports):
    amis = reports["amis"]
    expected = sorted([
        (amis["golden"], A_WEEK_AGO.date(), "PASS", 0, 1, 0, 0),
        (amis["golden"], TODAY, "FAIL", 1, 1, 1, 0),
        (amis["patched"], A_WEEK_AGO.date(), "FAIL", 1, 0, 0, 0),
        (amis["patched"], TODAY, "PASS", 0, 1, 0, 1),
        (amis["retired"], TEN_DAYS_AGO.date(), "PASS", 0, 1, 0, 0),
    ], key=lambda r: (r[0], r[1]))
    assert pick(results(reports, "05"), "ami_id", "scan_date", "verdict", "critical", "high", "medium", "low") == expected


def test_query_6_finds_the_ami_not_scanned_in_the_last_week(reports):
    retired = reports["amis"]["retired"]
    assert pick(results(reports, "06"), "ami_id", "ami_name", "last_scan_date", "last_scanned_at", "days_since") == [
        (retired, "q-retired", TEN_DAYS_AGO.date(), TEN_DAYS_AGO.replace(tzinfo=None), 10)]


def test_query_7_lists_the_incomplete_and_the_not_scannable_snapshot_scans_with_why(reports):
    snapshots = reports["snapshots"]
    rows = results(reports, "07", "with_snapshots")
    assert pick(rows, "ami_id", "ami_name", "verdict", "scan_mode", "finding_count", "findings_expected") == [
        (snapshots["partial"], "q-partial", "INCOMPLETE", "snapshot", 1, 2),
        (snapshots["unreadable"], "q-unreadable", "NOT_SCANNABLE", "snapshot", 0, None),
    ]
    assert "findings were missing: 1 of 2 arrived" in rows[0]["reason"] and "ACCESS_DENIED" in rows[1]["reason"]
    assert all(r["inspector_scan_id"] for r in rows)
    assert results(reports, "07") == [], "instance scans are never incomplete"


def test_query_8_lists_what_is_new_in_each_amis_latest_scan_most_severe_first(reports):
    amis = reports["amis"]
    rows = results(reports, "08")
    by_severity = {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 3, "LOW": 4}
    expected = sorted([
        (amis["golden"], "q-golden", False, "CRITICAL", "CVE-2024-6387", "openssh-server"),
        (amis["golden"], "q-golden", False, "MEDIUM", "CVE-2023-45853", "zlib1g"),
        (amis["patched"], "q-patched", False, "HIGH", "CVE-2024-2511", "openssl"),
        (amis["patched"], "q-patched", False, "LOW", "CVE-2023-1111", "bash"),
        (amis["retired"], "q-retired", True, "HIGH", "CVE-2021-44228", "log4j-core"),
    ], key=lambda r: (by_severity[r[3]], r[0], r[4], r[5]))
    assert pick(rows, "ami_id", "ami_name", "first_scan", "severity", "vulnerability_id", "package_name") == expected
    previous = {r["ami_id"]: r["previous_scan_id"] for r in rows}
    assert previous[amis["retired"]] is None
    for label in ("golden", "patched"):
        assert previous[amis[label]].startswith(f"{amis[label]}-") and "-r" not in previous[amis[label]], previous
    assert all(r["exception_reason"] is None for r in rows)


def test_query_9_lists_the_accepted_findings_with_their_expiry(reports):
    assert results(reports, "09") == [], "no exceptions file before the last run"
    rows = results(reports, "09", "with_exceptions")
    assert pick(rows, "ami_id", "ami_name", "severity", "vulnerability_id", "package_name", "exception_reason",
                "exception_expires", "days_left") == [
        (reports["accepted"], "q-accepted", "HIGH", "CVE-2024-2511", "openssl", "no TLS listener in this image",
         IN_TEN_DAYS, 10)]
    # The accepted finding is written, and does not count towards the verdict.
    scans = results(reports, "05", "with_exceptions")
    assert pick([r for r in scans if r["ami_id"] == reports["accepted"]], "verdict", "high", "low") == [("PASS", 0, 1)]


def test_the_first_six_queries_keep_their_answers_with_snapshot_scans_beside_them(reports):
    # Snapshot scans add rows of their own; the instance scans' answers stay.
    golden = reports["amis"]["golden"]
    assert [r["ami_id"] for r in results(reports, "01", "with_snapshots")] == [golden]
    assert results(reports, "06", "with_snapshots") == results(reports, "06")


def test_the_local_runner_says_what_to_do_without_reports(tmp_path):
    import subprocess
    out = subprocess.run([sys.executable, str(ROOT / "local/query.py"), "--reports", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "make demo" in out.stderr, out
