//! Each Lambda's handler against the local AWS emulator: what it leaves in the
//! emulator is read back and checked, not only what it returns.

use std::collections::BTreeMap;

use amiscan_core::cleanup as core_cleanup;
use amiscan_core::lambda::Handler;
use amiscan_core::settings::{
    CheckSettings, CleanupSettings, ExportSettings, FindSettings, LaunchSettings, RuleSettings,
    TagSettings,
};
use amiscan_tests::{
    cloud, env, finding, Cloud, ACCOUNT, SELECTION_KEY, SELECTION_VALUE, TAG_PREFIX,
};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

/// The resources a deployed stack provides, made in one Region.
struct Stack {
    cloud: Cloud,
    topic_arn: String,
    queue_url: String,
    launch_machine: String,
    report_machine: String,
    bucket: String,
    subnet: String,
    security_group: String,
    profile: String,
}

impl Stack {
    async fn new(region: &str) -> Stack {
        let cloud = cloud(region).await;
        let topic_arn = cloud.create_topic("amiscan").await;
        let queue_url = cloud.subscribe_queue(&topic_arn, "amiscan-messages").await;
        let launch_machine = cloud.create_state_machine("amiscan-launch-scan").await;
        let report_machine = cloud
            .create_state_machine("amiscan-report-and-cleanup")
            .await;
        let bucket = format!("amiscan-reports-{region}");
        cloud.create_bucket(&bucket).await;
        let subnet = cloud.default_subnet().await;
        let security_group = cloud.create_security_group("amiscan-scanner").await;
        let profile = format!("amiscan-scanner-{region}");
        cloud.create_instance_profile(&profile);
        Stack {
            cloud,
            topic_arn,
            queue_url,
            launch_machine,
            report_machine,
            bucket,
            subnet,
            security_group,
            profile,
        }
    }

    fn kms_key(&self) -> String {
        format!(
            "arn:aws:kms:{}:{ACCOUNT}:key/0a1b2c3d-test",
            self.cloud.region
        )
    }

    fn find_amis(&self, cap: u32) -> find_amis::Function {
        let settings = FindSettings::from_env(env(&[
            ("SELECTION_TAG_KEY", SELECTION_KEY),
            ("SELECTION_TAG_VALUE", SELECTION_VALUE),
            ("TAG_PREFIX", TAG_PREFIX),
            ("MAX_CONCURRENT_SCANS", &cap.to_string()),
            ("LAUNCH_STATE_MACHINE_ARN", &self.launch_machine),
            ("TOPIC_ARN", &self.topic_arn),
        ]))
        .unwrap();
        find_amis::Function::new(&self.cloud.config, settings)
    }

    fn launch_instance(&self, types: &str) -> launch_instance::Function {
        let settings = LaunchSettings::from_env(env(&[
            ("INSTANCE_TYPES", types),
            ("SUBNET_ID", &self.subnet),
            ("SECURITY_GROUP_ID", &self.security_group),
            ("INSTANCE_PROFILE", &self.profile),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap();
        launch_instance::Function::new(&self.cloud.config, settings)
    }

    fn create_scan_rule(&self) -> create_scan_rule::Function {
        let settings = RuleSettings::from_env(env(&[
            ("REPORT_STATE_MACHINE_ARN", &self.report_machine),
            (
                "EVENTS_ROLE_ARN",
                &format!("arn:aws:iam::{ACCOUNT}:role/amiscan-events"),
            ),
        ]))
        .unwrap();
        create_scan_rule::Function::new(&self.cloud.config, settings)
    }

    fn export_report(&self, format: &str) -> export_report::Function {
        let settings = ExportSettings::from_env(env(&[
            ("REPORT_BUCKET", &self.bucket),
            ("REPORT_KMS_KEY_ARN", &self.kms_key()),
            ("REPORT_FORMAT", format),
            ("SEVERITY_THRESHOLD", "CRITICAL"),
        ]))
        .unwrap();
        export_report::Function::new(&self.cloud.config, settings)
    }

    fn tag_ami(&self) -> tag_ami::Function {
        let settings = TagSettings::from_env(env(&[("TAG_PREFIX", TAG_PREFIX)])).unwrap();
        tag_ami::Function::new(&self.cloud.config, settings)
    }

    fn cleanup_settings(&self) -> CleanupSettings {
        CleanupSettings::from_env(env(&[("SCAN_TIMEOUT_MINUTES", "120")])).unwrap()
    }

    fn cleanup(&self) -> cleanup::Function {
        cleanup::Function::new(&self.cloud.config, self.cleanup_settings())
    }

    fn check_scan(&self) -> check_scan::Function {
        let settings = CheckSettings::from_env(env(&[
            ("TAG_PREFIX", TAG_PREFIX),
            ("REPORT_STATE_MACHINE_ARN", &self.report_machine),
        ]))
        .unwrap();
        check_scan::Function::new(&self.cloud.config, settings)
    }

    fn notifications(&self) -> Vec<Value> {
        self.cloud.receive_notifications(&self.queue_url)
    }

    /// Everything a function could change, for "nothing changed" checks.
    async fn snapshot(&self, ami_ids: &[&str]) -> Value {
        let mut tags = BTreeMap::new();
        for ami in ami_ids {
            tags.insert(ami.to_string(), self.cloud.image_tags(ami).await);
        }
        json!({
            "instances": self.cloud.instance_states().await,
            "rules": self.cloud.rule_names().await,
            "executions": self.cloud.executions(&self.launch_machine).await,
            "objects": self.cloud.object_keys(&self.bucket).await,
            "ami_tags": tags,
        })
    }

    /// find-amis' context for one AMI, as the launch machine receives it.
    fn scan_input(ami_id: &str) -> Value {
        json!({"scan_id": format!("{ami_id}-20261123"), "ami_id": ami_id})
    }

    /// Launches a scan instance and creates its rule, as launch-scan does.
    async fn launched_scan(&self, ami_id: &str) -> Value {
        let scan = self
            .launch_instance("t3.small")
            .handle(Stack::scan_input(ami_id))
            .await
            .unwrap();
        let scan = self
            .create_scan_rule()
            .handle(serde_json::to_value(scan).unwrap())
            .await
            .unwrap();
        serde_json::to_value(scan).unwrap()
    }
}

fn error_type(err: amiscan_core::Error) -> String {
    err.error_type().to_string()
}

fn message_of(envelope: &Value) -> (String, Value, String) {
    let subject = envelope["Subject"].as_str().unwrap_or_default().to_string();
    let body: Value = serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap();
    let event_type = envelope["MessageAttributes"]["event_type"]["Value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (subject, body, event_type)
}

// ---------------------------------------------------------------- find-amis

#[tokio::test]
async fn find_amis_with_nothing_tagged_starts_nothing_and_says_so() {
    let stack = Stack::new("eu-north-1").await;
    stack.cloud.register_ami("untagged", &[]).await;
    let out = stack.find_amis(20).handle(json!({})).await.unwrap();
    assert_eq!(out.found, 0);
    assert!(out.started.is_empty());
    assert!(stack
        .cloud
        .executions(&stack.launch_machine)
        .await
        .is_empty());
    let messages = stack.notifications();
    assert_eq!(messages.len(), 1);
    let (subject, body, event_type) = message_of(&messages[0]);
    assert_eq!(event_type, "NOTHING_TO_SCAN");
    assert!(subject.contains("nothing to scan"), "{subject}");
    assert_eq!(body["found"], 0);
}

#[tokio::test]
async fn find_amis_starts_one_scan_per_tagged_ami_once_per_day() {
    let stack = Stack::new("eu-west-1").await;
    let tagged = stack
        .cloud
        .register_ami("golden-ubuntu", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    stack
        .cloud
        .register_ami("other", &[(SELECTION_KEY, "false")])
        .await;
    let scheduled: Value =
        serde_json::from_str(include_str!("../events/find-amis/scheduled.json")).unwrap();

    let first = stack.find_amis(20).handle(scheduled.clone()).await.unwrap();
    assert_eq!(first.found, 1);
    assert_eq!(first.started.len(), 1);
    assert_eq!(first.started[0].ami_id, tagged);
    let today = Utc::now().format("%Y%m%d");
    assert_eq!(
        stack.cloud.executions(&stack.launch_machine).await,
        vec![format!("{tagged}-{today}")]
    );

    // The schedule firing again the same day starts nothing new.
    let again = stack.find_amis(20).handle(scheduled).await.unwrap();
    assert!(again.started.is_empty());
    assert_eq!(again.already_running.len(), 1);
    assert_eq!(stack.cloud.executions(&stack.launch_machine).await.len(), 1);

    let messages = stack.notifications();
    assert_eq!(messages.len(), 2);
    assert_eq!(message_of(&messages[0]).2, "SCAN_BATCH_STARTED");
    assert_eq!(message_of(&messages[1]).2, "NOTHING_TO_SCAN");

    // A forced manual re-scan gets an execution of its own.
    let forced = stack
        .find_amis(20)
        .handle(json!({"ami_ids": [tagged], "force": true}))
        .await
        .unwrap();
    assert_eq!(forced.started.len(), 1);
    assert_eq!(stack.cloud.executions(&stack.launch_machine).await.len(), 2);
}

#[tokio::test]
async fn find_amis_pages_through_1500_amis_and_explains_every_skip() {
    let stack = Stack::new("ap-southeast-2").await;
    let names: Vec<String> = (0..1500).map(|i| format!("golden-{i:04}")).collect();
    let tagged = stack
        .cloud
        .register_amis(&names, &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    // One not available, one already being scanned.
    stack
        .cloud
        .ec2()
        .disable_image()
        .image_id(&tagged[0])
        .send()
        .await
        .unwrap();
    let busy = stack
        .cloud
        .scanner_instance(&tagged[1], &format!("{}-20261122", tagged[1]), true)
        .await;

    let out = stack.find_amis(250).handle(json!({})).await.unwrap();
    assert_eq!(out.found, 1500);
    // The scanning instance takes one of the 250 slots.
    assert_eq!(out.started.len(), 249);
    let reasons: BTreeMap<&str, &str> = out
        .skipped
        .iter()
        .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 1500 - 249);
    assert_eq!(
        reasons[tagged[0].as_str()],
        "state is disabled (not available)"
    );
    assert_eq!(
        reasons[tagged[1].as_str()],
        format!("already being scanned by instance {busy}")
    );
    let capped = reasons
        .values()
        .filter(|r| r.starts_with("concurrent-scan cap of 250 reached"))
        .count();
    assert_eq!(capped, 1500 - 249 - 2);
    assert_eq!(
        stack.cloud.executions(&stack.launch_machine).await.len(),
        249
    );
}

#[tokio::test]
async fn find_amis_reports_requested_amis_that_are_missing_or_foreign() {
    let stack = Stack::new("eu-west-2").await;
    let own = stack.cloud.register_ami("requested-untagged", &[]).await;
    let foreign = stack.cloud.foreign_ami().await;
    let out = stack
        .find_amis(20)
        .handle(json!({"ami_ids": [own, foreign, "ami-0000000000000dead"]}))
        .await
        .unwrap();
    assert_eq!(out.found, 3);
    assert_eq!(out.started.len(), 1);
    assert_eq!(out.started[0].ami_id, own);
    let reasons: BTreeMap<&str, &str> = out
        .skipped
        .iter()
        .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons[foreign.as_str()], "not owned by this account");
    assert_eq!(reasons["ami-0000000000000dead"], "not found");
}

// ---------------------------------------------------------- launch-instance

#[tokio::test]
async fn launch_instance_starts_a_locked_down_tagged_instance() {
    let stack = Stack::new("us-west-1").await;
    let ami = stack
        .cloud
        .register_ami("golden-al2023", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let input: Value =
        serde_json::from_str(include_str!("../events/launch-instance/scan.json")).unwrap();
    // The sample's ids, pointed at this AMI.
    let mut input = input;
    input["ami_id"] = json!(ami);
    input["scan_id"] = json!(format!("{ami}-20261123"));

    let scan = stack
        .launch_instance("t3.small,t3a.small")
        .handle(input.clone())
        .await
        .unwrap();
    let instance_id = scan.instance_id.clone().unwrap();
    assert_eq!(scan.instance_type.as_deref(), Some("t3.small"));
    let launched_at = scan.launched_at.unwrap();
    assert_eq!(scan.deadline_at, Some(launched_at + Duration::minutes(120)));

    let instance = stack.cloud.instance(&instance_id).await;
    assert_eq!(instance.image_id(), Some(ami.as_str()));
    let metadata = instance.metadata_options().unwrap();
    assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(instance.public_ip_address(), None, "no public IP");
    // The primary interface carries the groups (the emulator leaves the
    // instance-level list empty when they come through the interface).
    let interface = &instance.network_interfaces()[0];
    let groups: Vec<_> = interface
        .groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(groups, [stack.security_group.as_str()]);
    assert_eq!(
        interface.association().and_then(|a| a.public_ip()),
        None,
        "no public IP on the interface"
    );
    assert_eq!(instance.subnet_id(), Some(stack.subnet.as_str()));
    let profile = instance
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .unwrap_or_default();
    assert!(
        profile.ends_with(&format!("instance-profile/{}", stack.profile)),
        "{profile}"
    );
    let tags: BTreeMap<_, _> = instance
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags["amiscan:managed"], "true");
    assert_eq!(tags["amiscan:ami-id"], ami);
    assert_eq!(tags["amiscan:scan-id"], format!("{ami}-20261123"));

    // A retried launch (same scan) does not start a second instance.
    let retried = stack
        .launch_instance("t3.small,t3a.small")
        .handle(input)
        .await
        .unwrap();
    assert_eq!(retried.instance_id, scan.instance_id);
    assert_eq!(
        stack
            .cloud
            .instances_tagged("amiscan:ami-id", &ami)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn launch_instance_refuses_missing_foreign_and_unavailable_amis() {
    let stack = Stack::new("us-west-2").await;
    let disabled = stack.cloud.register_ami("disabled", &[]).await;
    stack
        .cloud
        .ec2()
        .disable_image()
        .image_id(&disabled)
        .send()
        .await
        .unwrap();
    let foreign = stack.cloud.foreign_ami().await;
    let before = stack.cloud.instance_states().await;
    let cases = [
        ("ami-0000000000000dead", "NotFound"),
        (foreign.as_str(), "AmiNotUsable"),
        (disabled.as_str(), "AmiNotUsable"),
    ];
    for (ami, expected) in cases {
        let err = stack
            .launch_instance("t3.small")
            .handle(Stack::scan_input(ami))
            .await
            .unwrap_err();
        assert_eq!(error_type(err), expected, "{ami}");
    }
    assert_eq!(stack.cloud.instance_states().await, before);
}

// --------------------------------------------------------- create-scan-rule

#[tokio::test]
async fn create_scan_rule_makes_one_rule_and_target_even_when_run_twice() {
    let stack = Stack::new("ca-central-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack
        .launch_instance("t3.small")
        .handle(Stack::scan_input(&ami))
        .await
        .unwrap();
    let instance_id = scan.instance_id.clone().unwrap();
    let input = serde_json::to_value(&scan).unwrap();
    let first = stack
        .create_scan_rule()
        .handle(input.clone())
        .await
        .unwrap();
    let second = stack.create_scan_rule().handle(input).await.unwrap();
    assert_eq!(first, second);
    let name = first.rule_name.clone().unwrap();
    assert_eq!(name, format!("amiscan-scan-{instance_id}"));
    assert_eq!(stack.cloud.rule_names().await, [name.as_str()]);

    let events = stack.cloud.events();
    let rule = events.describe_rule().name(&name).send().await.unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["source"], json!(["aws.inspector2"]));
    assert_eq!(pattern["detail-type"], json!(["Inspector2 Scan"]));
    assert_eq!(pattern["detail"]["instance-id"], json!([instance_id]));
    assert_eq!(
        pattern["detail"]["scan-status"],
        json!(["INITIAL_SCAN_COMPLETE"])
    );
    let targets = events
        .list_targets_by_rule()
        .rule(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(targets.targets().len(), 1);
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), stack.report_machine);
    assert!(target.role_arn().unwrap().ends_with(":role/amiscan-events"));
    let template = target.input_transformer().unwrap().input_template();
    assert!(
        template.contains(&format!("\"instance_id\":\"{instance_id}\"")),
        "{template}"
    );
}

// ------------------------------------------------------------ export-report

#[tokio::test]
async fn export_report_writes_jsonl_csv_and_summary_with_the_verdict() {
    let stack = Stack::new("eu-central-1").await;
    let ami = stack.cloud.register_ami("golden-ubuntu", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    stack.cloud.queue_findings(vec![
        finding(
            1,
            &instance_id,
            &ami,
            "CRITICAL",
            "CVE-2026-1000",
            "openssl",
        ),
        finding(2, &instance_id, &ami, "HIGH", "CVE-2026-2000", "curl"),
        finding(3, &instance_id, &ami, "MEDIUM", "CVE-2026-3000", "zlib"),
    ]);
    let summary = stack
        .export_report("CSV")
        .handle(json!({"scan": scan, "inspector": {"severity_counts": {"CRITICAL": 1, "HIGH": 1, "MEDIUM": 1, "TOTAL": 3}}}))
        .await
        .unwrap();
    assert_eq!(summary.verdict.as_str(), "FAIL");
    assert_eq!(
        (
            summary.counts.critical,
            summary.counts.high,
            summary.counts.medium
        ),
        (1, 1, 1)
    );
    assert_eq!(summary.finding_count, 3);

    let (data, sse) = stack
        .cloud
        .object_text(&stack.bucket, &summary.findings_key)
        .await;
    assert_eq!(sse.as_deref(), Some("aws:kms"));
    let rows: Vec<Value> = data
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["vulnerability_id"], "CVE-2026-1000");
    assert_eq!(rows[0]["ami_id"], ami.as_str());
    assert_eq!(rows[0]["instance_id"], instance_id.as_str());
    assert_eq!(rows[0]["fixed_in_version"], "1.0.1-1ubuntu1");
    assert_eq!(rows[0]["exploit_available"], true);
    let raw: Value = serde_json::from_str(rows[0]["finding_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        raw["packageVulnerabilityDetails"]["vulnerabilityId"],
        "CVE-2026-1000"
    );

    let (csv, _) = stack
        .cloud
        .object_text(&stack.bucket, summary.report_key.as_deref().unwrap())
        .await;
    let mut lines = csv.split("\r\n");
    assert!(lines
        .next()
        .unwrap()
        .starts_with("AWS Account Id,Severity,Fix Available"));
    assert_eq!(csv.matches("\r\n").count(), 4);
    assert!(csv.contains("\"openssl: a flaw, \"\"quoted\"\", with a comma\""));

    let (line, _) = stack
        .cloud
        .object_text(&stack.bucket, &summary.summary_key)
        .await;
    assert_eq!(line.lines().count(), 1);
    let record: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["verdict"], "FAIL");
    assert_eq!(record["critical"], 1);
    assert_eq!(record["findings_key"], summary.findings_key.as_str());
    assert_eq!(
        summary.report_uri,
        format!("s3://{}/{}", stack.bucket, summary.report_key.unwrap())
    );
}

#[tokio::test]
async fn export_report_with_no_findings_still_writes_the_summary() {
    let stack = Stack::new("eu-west-3").await;
    let ami = stack.cloud.register_ami("golden-clean", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let summary = stack
        .export_report("JSON")
        .handle(json!({"scan": scan}))
        .await
        .unwrap();
    assert_eq!(summary.verdict.as_str(), "PASS");
    assert_eq!(summary.finding_count, 0);
    let (data, _) = stack
        .cloud
        .object_text(&stack.bucket, &summary.findings_key)
        .await;
    assert_eq!(data, "");
    let (report, _) = stack
        .cloud
        .object_text(&stack.bucket, summary.report_key.as_deref().unwrap())
        .await;
    assert_eq!(serde_json::from_str::<Value>(&report).unwrap(), json!([]));
    let (line, _) = stack
        .cloud
        .object_text(&stack.bucket, &summary.summary_key)
        .await;
    let record: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["finding_count"], 0);
    assert_eq!(record["verdict"], "PASS");
}

// ------------------------------------------------------------------ tag-ami

#[tokio::test]
async fn tag_ami_writes_status_then_result_and_reports_a_missing_ami() {
    let stack = Stack::new("ap-northeast-1").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let scan = Stack::scan_input(&ami);

    stack
        .tag_ami()
        .handle(json!({"scan": scan, "status": "TIMED_OUT", "reason": {"Error": "NoScan", "Cause": "UNMANAGED_EC2_INSTANCE"}}))
        .await
        .unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(tags["amiscan:status"], "TIMED_OUT");
    assert_eq!(tags["amiscan:reason"], "NoScan: UNMANAGED_EC2_INSTANCE");

    let summary: Value =
        serde_json::from_str(include_str!("../events/tag-ami/complete.json")).unwrap();
    let mut request = summary;
    request["scan"] = scan.clone();
    request["summary"]["ami_id"] = json!(ami);
    request["summary"]["scan_id"] = scan["scan_id"].clone();
    stack.tag_ami().handle(request).await.unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(tags["amiscan:status"], "COMPLETE");
    assert_eq!(tags["amiscan:verdict"], "FAIL");
    assert_eq!(tags["amiscan:critical"], "1");
    assert_eq!(tags["amiscan:high"], "2");
    assert!(tags["amiscan:report-uri"].starts_with("s3://"));
    assert!(
        !tags.contains_key("amiscan:reason"),
        "a completed scan clears the old reason"
    );
    assert_eq!(
        tags[SELECTION_KEY], SELECTION_VALUE,
        "other tags are left alone"
    );

    stack
        .cloud
        .ec2()
        .deregister_image()
        .image_id(&ami)
        .send()
        .await
        .unwrap();
    let err = stack
        .tag_ami()
        .handle(json!({"scan": scan, "status": "FAILED"}))
        .await
        .unwrap_err();
    assert_eq!(error_type(err), "NotFound");
}

// ------------------------------------------------------------------ cleanup

#[tokio::test]
async fn cleanup_removes_the_instance_and_rule_and_is_idempotent() {
    let stack = Stack::new("sa-east-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    let rule = scan["rule_name"].as_str().unwrap().to_string();

    let report = stack.cleanup().handle(json!({"scan": scan})).await.unwrap();
    assert_eq!(report.terminated, [instance_id.as_str()]);
    assert_eq!(report.rules_deleted, [rule.as_str()]);
    assert_eq!(stack.cloud.instance_state(&instance_id).await, "terminated");
    assert!(stack.cloud.rule_names().await.is_empty());

    let again = stack.cleanup().handle(json!({"scan": scan})).await.unwrap();
    assert!(again.terminated.is_empty());
    assert_eq!(again.instances_already_gone, [instance_id]);
    assert_eq!(again.rules_already_gone, [rule]);
}

#[tokio::test]
async fn cleanup_finds_an_instance_by_its_scan_id_when_the_launch_result_was_lost() {
    let stack = Stack::new("ap-south-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack
        .launch_instance("t3.small")
        .handle(Stack::scan_input(&ami))
        .await
        .unwrap();
    let report = stack
        .cleanup()
        .handle(json!({"scan_id": scan.scan_id}))
        .await
        .unwrap();
    assert_eq!(report.terminated, [scan.instance_id.clone().unwrap()]);
    assert_eq!(
        stack
            .cloud
            .instance_state(scan.instance_id.as_deref().unwrap())
            .await,
        "terminated"
    );
}

#[tokio::test]
async fn cleanup_refuses_an_instance_without_the_scanner_tag() {
    let stack = Stack::new("ap-northeast-2").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let stranger = stack
        .cloud
        .scanner_instance(&ami, &format!("{ami}-20261123"), false)
        .await;
    let err = stack
        .cleanup()
        .handle(json!({"instance_id": stranger}))
        .await
        .unwrap_err();
    assert_eq!(error_type(err), "NotScannerManaged");
    assert_eq!(stack.cloud.instance_state(&stranger).await, "running");
}

#[tokio::test]
async fn sweep_removes_orphans_past_the_deadline_and_keeps_live_scans() {
    let stack = Stack::new("ap-southeast-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    let rule = scan["rule_name"].as_str().unwrap().to_string();
    // A rule whose instance is long gone, and somebody else's rule.
    let gone = stack.cloud.scanner_instance(&ami, "x", true).await;
    stack
        .cloud
        .ec2()
        .terminate_instances()
        .instance_ids(&gone)
        .send()
        .await
        .unwrap();
    let events = stack.cloud.events();
    let stale_rule = format!("amiscan-scan-{gone}");
    events
        .put_rule()
        .name(&stale_rule)
        .event_pattern(r#"{"source":["aws.inspector2"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_rule()
        .name("someone-elses-rule")
        .event_pattern(r#"{"source":["aws.ec2"]}"#)
        .send()
        .await
        .unwrap();
    let stranger = stack.cloud.scanner_instance(&ami, "y", false).await;
    let settings = stack.cleanup_settings();

    // Within the deadline: only the stale rule goes.
    let now = core_cleanup::sweep(&stack.cloud.ec2(), &events, &settings, Utc::now())
        .await
        .unwrap();
    assert!(now.terminated.is_empty());
    assert_eq!(now.rules_deleted, [stale_rule]);
    assert_eq!(stack.cloud.instance_state(&instance_id).await, "running");

    // Past the deadline plus margin: the scan instance and its rule go too.
    let later = Utc::now() + Duration::minutes(120 + 30 + 1);
    let swept = core_cleanup::sweep(&stack.cloud.ec2(), &events, &settings, later)
        .await
        .unwrap();
    assert_eq!(swept.terminated, [instance_id.as_str()]);
    assert_eq!(swept.rules_deleted, [rule]);
    assert_eq!(stack.cloud.instance_state(&instance_id).await, "terminated");
    assert_eq!(stack.cloud.instance_state(&stranger).await, "running");
    assert_eq!(stack.cloud.rule_names().await, ["someone-elses-rule"]);

    // The hourly schedule's event runs the sweep through the handler.
    let scheduled: Value =
        serde_json::from_str(include_str!("../events/cleanup/sweep-scheduled.json")).unwrap();
    let report = stack.cleanup().handle(scheduled).await.unwrap();
    assert!(report.terminated.is_empty());
}

// -------------------------------------------------------- malformed events

#[tokio::test]
async fn every_function_rejects_a_malformed_event_by_field_and_changes_nothing() {
    let stack = Stack::new("us-east-2").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let scan = stack.launched_scan(&ami).await;
    let before = stack.snapshot(&[&ami]).await;
    stack.notifications();

    let malformed: Vec<(&str, Result<(), amiscan_core::Error>, &str)> = vec![
        (
            "find-amis",
            stack.find_amis(20).handle(json!({"ami_ids": ["ami-12345678", "not-an-ami"]})).await.map(drop),
            "ami_ids[1]",
        ),
        (
            "find-amis",
            stack.find_amis(20).handle(json!({"ami_id": "ami-12345678"})).await.map(drop),
            "ami_id",
        ),
        (
            "launch-instance",
            stack.launch_instance("t3.small").handle(json!({"scan_id": 7, "ami_id": ami})).await.map(drop),
            "scan_id",
        ),
        (
            "create-scan-rule",
            stack.create_scan_rule().handle(Stack::scan_input(&ami)).await.map(drop),
            "instance_id",
        ),
        (
            "export-report",
            stack.export_report("CSV").handle(json!({"scan": {"scan_id": scan["scan_id"], "ami_id": ami, "instance_id": "i-zz"}})).await.map(drop),
            "scan.instance_id",
        ),
        (
            "tag-ami",
            stack.tag_ami().handle(json!({"scan": scan, "status": "DONE"})).await.map(drop),
            "status",
        ),
        (
            "tag-ami",
            stack.tag_ami().handle(json!({"scan": scan, "status": "COMPLETE"})).await.map(drop),
            "summary",
        ),
        (
            "cleanup",
            stack.cleanup().handle(json!({"rule_name": "someone-elses-rule"})).await.map(drop),
            "rule_name",
        ),
        ("cleanup", stack.cleanup().handle(json!({})).await.map(drop), "scan_id"),
        (
            "check-scan",
            stack
                .check_scan()
                .handle(json!({"scan_id": scan["scan_id"], "ami_id": ami}))
                .await
                .map(drop),
            "instance_id",
        ),
    ];
    for (function, result, field) in malformed {
        match result {
            Err(amiscan_core::Error::InvalidInput { field: got, .. }) => {
                assert_eq!(got, field, "{function}")
            }
            other => panic!("{function}: expected InvalidInput on {field}, got {other:?}"),
        }
    }
    assert_eq!(
        stack.snapshot(&[&ami]).await,
        before,
        "a malformed event changed the emulator"
    );
    assert!(
        stack.notifications().is_empty(),
        "a malformed event published a message"
    );
}
