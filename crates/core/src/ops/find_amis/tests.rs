use super::*;
use chrono::TimeZone;

fn home() -> Place {
    Place {
        account_id: "123456789012".parse().unwrap(),
        region: "us-east-1".parse().unwrap(),
    }
}

fn ami(id: &str, state: &str, last: Option<&str>) -> AmiCandidate {
    AmiCandidate {
        ami_id: id.parse().unwrap(),
        place: home(),
        name: None,
        platform: "Linux/UNIX".into(),
        state: state.into(),
        last_scanned: last.map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)),
        verdict: None,
    }
}

fn sample(path: &str) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    serde_json::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
}

fn named(ids: &[&str], force: bool) -> FindRequest {
    FindRequest {
        named: ids.iter().map(|id| id.parse().unwrap()).collect(),
        force,
        ..FindRequest::default()
    }
}

#[test]
fn requests_parse_into_tagged_named_or_created_runs() {
    assert_eq!(
        parse_request(sample("find-amis/scheduled.json")).unwrap(),
        FindRequest::tagged(false)
    );
    assert_eq!(
        parse_request(json!({})).unwrap(),
        FindRequest::tagged(false)
    );
    assert_eq!(
        parse_request(sample("find-amis/manual.json")).unwrap(),
        named(&["ami-0123456789abcdef0", "ami-0fedcba9876543210"], false)
    );
    assert!(
        parse_request(sample("find-amis/rescan-today.json"))
            .unwrap()
            .force
    );
    let duplicated = parse_request(json!({"ami_ids": ["ami-12345678", "ami-12345678"]})).unwrap();
    assert_eq!(duplicated.named.len(), 1);

    let created = parse_request(sample("find-amis/ami-available.json")).unwrap();
    assert_eq!(
        created,
        FindRequest {
            created: vec!["ami-0a1b2c3d4e5f60718".parse().unwrap()],
            created_in: [("ami-0a1b2c3d4e5f60718".to_string(), home())].into(),
            ..FindRequest::default()
        }
    );
    assert!(created.creation_only());
    let mut failed = sample("find-amis/ami-available.json");
    failed["detail"]["State"] = json!("failed");
    assert_eq!(parse_request(failed).unwrap(), FindRequest::default());
}

#[test]
fn a_queue_batch_merges_its_triggers_and_reports_what_it_cannot_read() {
    let batch = sample("find-amis/queue-batch.json");
    let bodies = batch["Records"].as_array().unwrap().len();
    let mut with_junk = batch.clone();
    with_junk["Records"]
        .as_array_mut()
        .unwrap()
        .push(json!({"messageId": "m-junk", "body": "{\"detail-type\": \"EC2 AMI State Change\", \"detail\": {}}"}));
    let request = parse_request(with_junk).unwrap();
    assert!(request.tagged, "the batch carries the weekly run");
    // The same AMI twice (EventBridge delivers at least once) is one scan.
    assert_eq!(request.created.len(), bodies - 2);
    assert_eq!(request.ignored.len(), 1);
    assert_eq!(request.ignored[0].ami_id, "(message m-junk)");
    assert!(
        request.ignored[0].reason.contains("source"),
        "{}",
        request.ignored[0].reason
    );
    assert!(!request.creation_only());
}

#[test]
fn bad_requests_name_their_field() {
    let field_of = |v: Value| match parse_request(v).unwrap_err() {
        Error::InvalidInput { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field_of(json!({"ami_ids": []})), "ami_ids");
    assert_eq!(
        field_of(json!({"ami_ids": ["ami-12345678", "bogus"]})),
        "ami_ids[1]"
    );
    assert_eq!(field_of(json!({"ami_ids": "ami-12345678"})), "ami_ids");
    assert_eq!(field_of(json!({"force": "yes"})), "force");
    assert_eq!(field_of(json!({"subnet_id": "subnet-1"})), "subnet_id");
    assert_eq!(
        field_of(json!({"detail-type": "Scheduled Event"})),
        "source"
    );
    let mut event = sample("find-amis/ami-available.json");
    event["detail"]["ImageId"] = json!("snap-0123");
    assert_eq!(field_of(event.clone()), "detail.ImageId");
    event["detail"] = json!({"State": "available"});
    assert_eq!(field_of(event), "detail.ImageId");
    assert_eq!(
        field_of(json!({"Records": [{"body": "{}"}]})),
        "Records[0].messageId"
    );
}

#[test]
fn the_plan_skips_with_reasons_and_starts_the_least_recently_scanned_first() {
    let candidates = vec![
        ami("ami-00000001", "available", Some("2026-11-20T00:00:00Z")),
        ami("ami-00000002", "pending", None),
        ami("ami-00000003", "available", None),
        ami("ami-00000004", "available", Some("2026-11-01T00:00:00Z")),
        ami("ami-00000005", "available", None),
    ];
    let busy = HashMap::from([
        (
            "ami-00000005".to_string(),
            Busy::Instance("i-0000000a".into()),
        ),
        (
            "ami-00000006".to_string(),
            Busy::Execution("ami-00000006-20261130".into()),
        ),
        (
            "ami-00000007".to_string(),
            Busy::Execution("ami-00000007-20261201".into()),
        ),
    ]);
    let candidates = candidates
        .into_iter()
        .chain([
            ami("ami-00000006", "available", None),
            ami("ami-00000007", "available", None),
        ])
        .collect();
    let today = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
    let missing = vec![Skipped {
        ami_id: "ami-0000dead".into(),
        reason: "not found".into(),
    }];
    let plan = plan_scans(candidates, missing, &busy, 3, 5, |a| {
        ScanId::new(a, today, false)
    });
    let started: Vec<_> = plan.to_start.iter().map(|a| a.ami_id.as_str()).collect();
    // Three slots of five are taken by running scans: two start,
    // never-scanned first.
    assert_eq!(started, ["ami-00000003", "ami-00000004"]);
    // Today's scan of ami-00000007 is the one this run would start.
    let running: Vec<_> = plan
        .already_running
        .iter()
        .map(|(a, id)| (a.ami_id.as_str(), id.as_str()))
        .collect();
    assert_eq!(running, [("ami-00000007", "ami-00000007-20261201")]);
    let reasons: HashMap<_, _> = plan
        .skipped
        .iter()
        .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons["ami-0000dead"], "not found");
    assert_eq!(reasons["ami-00000002"], "state is pending (not available)");
    assert_eq!(
        reasons["ami-00000005"],
        "already being scanned by instance i-0000000a"
    );
    assert_eq!(
        reasons["ami-00000006"],
        "already being scanned by execution ami-00000006-20261130"
    );
    assert_eq!(
        reasons["ami-00000001"],
        "concurrent-scan cap of 5 reached; first in line next run"
    );
    assert_eq!(
        plan.to_start.len() + plan.skipped.len() + plan.already_running.len(),
        8
    );
}

#[test]
fn overdue_amis_are_those_never_scanned_or_scanned_before_the_maximum_age() {
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
    let candidates = vec![
        ami("ami-00000001", "available", Some("2026-11-24T08:00:00Z")),
        ami("ami-00000002", "available", Some("2026-11-23T07:59:59Z")),
        ami("ami-00000003", "available", None),
        ami("ami-00000004", "available", Some("2026-11-30T00:00:00Z")),
        ami("ami-00000005", "available", Some("2026-10-01T00:00:00Z")),
    ];
    assert_eq!(candidates[0].scan_age_days(now), Some(7));
    let late = overdue(&candidates, 7, now);
    let listed: Vec<_> = late
        .iter()
        .map(|o| (o.ami_id.as_str(), o.scan_age_days))
        .collect();
    // Seven days old is not overdue; eight is; never scanned leads.
    assert_eq!(
        listed,
        [
            ("ami-00000003", None),
            ("ami-00000005", Some(61)),
            ("ami-00000002", Some(8))
        ]
    );
    assert!(overdue(&candidates, 365, now).len() == 1);
}

fn summary_settings() -> FindSettings {
    FindSettings {
        selection_tag_key: "InspectorScan".into(),
        selection_tag_value: "true".into(),
        tag_prefix: "amiscan:".parse().unwrap(),
        max_concurrent_scans: 20,
        launch_state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:x".parse().unwrap(),
        topic_arn: "arn:aws:sns:us-east-1:1:t".parse().unwrap(),
        scan_mode: ScanMode::Auto,
        scan_on_create: ScanOnCreate::Tagged,
        max_scan_age_days: 7,
        report_bucket: "amiscan-reports".parse().unwrap(),
        home: crate::settings::Home::for_tests(),
        member_accounts: Vec::new(),
        scan_regions: Vec::new(),
        member_ous: Vec::new(),
    }
}

#[test]
fn the_summary_says_nothing_tagged_or_how_many_started() {
    let settings = summary_settings();
    let request = FindRequest::tagged(false);
    let empty = summary(&FindOutput::default(), &settings, &request);
    assert_eq!(empty.event_type, EventType::NothingToScan);
    assert_eq!(
        empty.subject,
        "amiscan: nothing to scan, no AMIs tagged InspectorScan=true"
    );
    let started = FindOutput {
        found: 2,
        started: vec![StartedScan {
            ami_id: "ami-00000001".parse().unwrap(),
            place: home(),
            scan_id: ScanId::new(
                &"ami-00000001".parse().unwrap(),
                Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap(),
                false,
            ),
            execution_arn: None,
            last_scanned: None,
            scan_age_days: None,
        }],
        skipped: vec![Skipped {
            ami_id: "ami-00000002".into(),
            reason: "x".into(),
        }],
        overdue: vec![Overdue {
            ami_id: "ami-00000002".parse().unwrap(),
            place: home(),
            last_scanned: None,
            scan_age_days: None,
            scanning: false,
            verdict: None,
            marked_stale: false,
        }],
        ..FindOutput::default()
    };
    let note = summary(&started, &settings, &request);
    assert_eq!(note.event_type, EventType::ScanBatchStarted);
    assert_eq!(
        note.subject,
        "amiscan: started 1 scans (2 found, 1 skipped)"
    );
    assert_eq!(note.body["started"][0]["scan_id"], "ami-00000001-20261127");
    assert_eq!(note.body["started"][0]["scan_age_days"], Value::Null);
    // An overdue AMI this run does not scan makes the summary a warning.
    assert_eq!(note.severity, "WARNING");
    assert_eq!(note.body["counts"]["overdue_not_scanning"], 1);
    assert_eq!(note.body["overdue"][0]["ami_id"], "ami-00000002");
}

#[test]
fn exceptions_expiring_within_fourteen_days_are_listed_soonest_first() {
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 23, 0, 0).unwrap();
    let file = serde_json::json!({"exceptions": [
        {"vulnerability_id": "CVE-far", "reason": "r", "owner": "o", "expires": "2026-12-16"},
        {"vulnerability_id": "CVE-edge", "reason": "r", "owner": "o", "expires": "2026-12-15", "ami": "golden-*"},
        {"vulnerability_id": "CVE-today", "reason": "r", "owner": "o", "expires": "2026-12-01", "package": "openssl"},
        {"vulnerability_id": "CVE-gone", "reason": "r", "owner": "o", "expires": "2026-11-30"},
    ]});
    let list = exceptions::parse("f", file.to_string().as_bytes(), now.date_naive()).unwrap();
    let soon = expiring(&list, now);
    let listed: Vec<_> = soon
        .iter()
        .map(|e| (e.vulnerability_id.as_str(), e.days_left))
        .collect();
    assert_eq!(listed, [("CVE-today", 0), ("CVE-edge", 14)]);
    assert_eq!(soon[1].ami.as_deref(), Some("golden-*"));
}

#[test]
fn a_creation_run_alerts_only_when_it_starts_defers_or_fails_a_scan() {
    let settings = summary_settings();
    let created = FindRequest {
        created: vec!["ami-00000001".parse().unwrap()],
        ..FindRequest::default()
    };
    let untagged = FindOutput {
        found: 1,
        skipped: vec![Skipped {
            ami_id: "ami-00000001".into(),
            reason: not_selected(&settings),
        }],
        ..FindOutput::default()
    };
    assert!(!worth_alerting(&untagged, &created));
    // The weekly run always reports, even with nothing to do.
    assert!(worth_alerting(
        &FindOutput::default(),
        &FindRequest::tagged(false)
    ));
    let capped = FindOutput {
        skipped: vec![Skipped {
            ami_id: "ami-00000001".into(),
            reason: "concurrent-scan cap of 5 reached; first in line next run".into(),
        }],
        ..untagged.clone()
    };
    assert!(worth_alerting(&capped, &created));
    let note = summary(&capped, &settings, &created);
    assert_eq!(note.body["selection"], "1 new AMIs");
    assert_eq!(
        not_selected(&settings),
        "not tagged InspectorScan=true (ScanOnCreate=TAGGED); the weekly run scans it once tagged"
    );
}

#[test]
fn scan_on_create_and_the_maximum_age_come_from_the_environment() {
    let base = [
        ("SELECTION_TAG_KEY", "InspectorScan"),
        ("SELECTION_TAG_VALUE", "true"),
        ("TAG_PREFIX", "amiscan:"),
        ("MAX_CONCURRENT_SCANS", "20"),
        (
            "LAUNCH_STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:x",
        ),
        ("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t"),
        ("REPORT_BUCKET", "amiscan-reports"),
        ("ACCOUNT_ID", "123456789012"),
    ];
    let read = |extra: &[(&'static str, &'static str)]| {
        let pairs: Vec<_> = base.iter().chain(extra).copied().collect();
        FindSettings::from_env(crate::settings::tests::env(&pairs))
    };
    let defaults = read(&[]).unwrap();
    assert_eq!(defaults.scan_on_create, ScanOnCreate::Tagged);
    assert_eq!(defaults.max_scan_age_days, 7);
    assert!(defaults.member_accounts.is_empty() && defaults.scan_regions.is_empty());
    let org = read(&[
        ("MEMBER_ACCOUNTS", "111111111111, 222222222222,111111111111"),
        ("SCAN_REGIONS", "eu-west-1,us-east-1"),
    ])
    .unwrap();
    assert_eq!(org.member_accounts.len(), 2, "listed once each");
    assert_eq!(org.scan_regions[0].as_str(), "eu-west-1");
    let ous = read(&[("MEMBER_OUS", "ou-ab12-cd34ef56,ou-zz99-00000000")]).unwrap();
    assert_eq!(ous.member_ous.len(), 2);
    let err = read(&[
        ("MEMBER_ACCOUNTS", "1111"),
        ("SCAN_REGIONS", "Europe"),
        ("MEMBER_OUS", "r-ab12"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("MEMBER_ACCOUNTS=")
            && err.contains("SCAN_REGIONS=")
            && err.contains("MEMBER_OUS="),
        "{err}"
    );
    let all = read(&[("SCAN_ON_CREATE", "ALL"), ("MAX_SCAN_AGE_DAYS", "30")]).unwrap();
    assert_eq!(
        (all.scan_on_create, all.max_scan_age_days),
        (ScanOnCreate::All, 30)
    );
    for (var, value) in [("SCAN_ON_CREATE", "SOMETIMES"), ("MAX_SCAN_AGE_DAYS", "0")] {
        let err = read(&[(var, value)]).unwrap_err().to_string();
        assert!(err.contains(var), "{err}");
    }
}

#[test]
fn the_run_alert_stays_under_the_sns_size_limit_over_ten_thousand_amis() {
    let settings = summary_settings();
    let request = FindRequest::tagged(false);
    let output = FindOutput {
        found: 10_000,
        skipped: (0..9_990)
            .map(|n| Skipped {
                ami_id: format!("ami-{n:017x}"),
                reason: "the concurrency cap (20 scans at once) is reached; scanned on a later run"
                    .into(),
            })
            .collect(),
        ..FindOutput::default()
    };
    let note = summary(&output, &settings, &request);
    let size = serde_json::to_string(&note.body).unwrap().len();
    assert!(size < 64 * 1024, "{size} bytes");
    assert_eq!(note.body["counts"]["skipped"], 9_990);
    assert_eq!(
        note.body["skipped"].as_array().unwrap().len(),
        LISTED_PER_KIND
    );
    assert_eq!(note.body["not_listed"]["skipped"], 9_990 - LISTED_PER_KIND);
    assert_eq!(note.body["skipped"][0]["ami_id"], "ami-00000000000000000");
}

fn place(account: &str, region: &str) -> Place {
    Place {
        account_id: account.parse().unwrap(),
        region: region.parse().unwrap(),
    }
}

#[test]
fn a_run_covers_home_then_each_member_in_each_region_once() {
    let mut settings = summary_settings();
    assert_eq!(
        places_of(&settings.member_accounts, &settings.scan_regions, &home()),
        vec![home()]
    );
    settings.member_accounts = vec![
        "111111111111".parse().unwrap(),
        "123456789012".parse().unwrap(),
    ];
    assert_eq!(
        places_of(&settings.member_accounts, &settings.scan_regions, &home()),
        vec![home(), place("111111111111", "us-east-1")],
        "without ScanRegions, home's Region only; the hub's own account is not listed twice"
    );
    settings.scan_regions = vec!["us-east-1".parse().unwrap(), "eu-west-1".parse().unwrap()];
    assert_eq!(
        places_of(&settings.member_accounts, &settings.scan_regions, &home()),
        vec![
            home(),
            place("111111111111", "us-east-1"),
            place("111111111111", "eu-west-1"),
            place("123456789012", "eu-west-1"),
        ]
    );
}

#[test]
fn instance_scans_run_at_home_and_where_a_member_has_a_subnet() {
    let away = place("111111111111", "eu-west-1");
    assert_eq!(
        mode_at(ScanMode::Auto, &home(), &home(), false),
        Ok(ScanMode::Auto)
    );
    assert_eq!(
        mode_at(ScanMode::Auto, &away, &home(), false),
        Ok(ScanMode::Snapshot)
    );
    assert_eq!(
        mode_at(ScanMode::Snapshot, &away, &home(), false),
        Ok(ScanMode::Snapshot)
    );
    assert_eq!(
        mode_at(ScanMode::Instance, &away, &home(), false),
        Err("no subnet for instance scans in 111111111111/eu-west-1".to_string())
    );
    // member.yaml gave that place a scanner subnet: both modes as asked.
    assert_eq!(
        mode_at(ScanMode::Auto, &away, &home(), true),
        Ok(ScanMode::Auto)
    );
    assert_eq!(
        mode_at(ScanMode::Instance, &away, &home(), true),
        Ok(ScanMode::Instance)
    );
}

#[test]
fn only_a_refused_assume_role_means_not_onboarded() {
    let refused = |operation, code: &str| Error::Aws {
        operation,
        code: code.into(),
        message: "no".into(),
        transient: false,
    };
    assert!(is_not_onboarded(&refused("AssumeRole", "AccessDenied")));
    assert!(!is_not_onboarded(&refused("AssumeRole", "Throttling")));
    assert!(!is_not_onboarded(&refused(
        "DescribeImages",
        "AccessDenied"
    )));
}

#[test]
fn a_creation_event_says_where_the_ami_is_and_outsiders_are_named() {
    let mut event = sample("find-amis/ami-available.json");
    event["account"] = json!("111111111111");
    event["region"] = json!("eu-west-1");
    let request = parse_request(event.clone()).unwrap();
    let id = request.created[0].to_string();
    assert_eq!(request.created_in[&id], place("111111111111", "eu-west-1"));
    event["region"] = json!("Moon-1");
    let err = parse_request(event).unwrap_err();
    assert!(err.to_string().contains("`region`"), "{err}");

    let targets = vec![home(), place("111111111111", "us-east-1")];
    assert_eq!(
        uncovered(&place("111111111111", "us-east-1"), &targets),
        None
    );
    assert!(uncovered(&place("111111111111", "eu-west-1"), &targets)
        .unwrap()
        .contains("Region eu-west-1 is not in ScanRegions"));
    assert!(uncovered(&place("222222222222", "us-east-1"), &targets)
        .unwrap()
        .contains("account 222222222222 is not in MemberAccounts"));
}
