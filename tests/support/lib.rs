//! Test harness over the local AWS emulator that `tests/with-moto` starts:
//! SDK configuration for it, and seeding and reading helpers. Each test works
//! in a Region of its own, so tests run in parallel without seeing each other.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;

use amiscan_core::aws::aws_config::{self, BehaviorVersion, Region};
use amiscan_core::aws::ec2::config::Credentials;
use amiscan_core::aws::ec2::types::{Filter, Tag};
use amiscan_core::aws::{ec2, events, inspector, s3, sfn, sns, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::ops::check_scan::CheckSettings;
use amiscan_core::ops::cleanup::CleanupSettings;
use amiscan_core::ops::collect_findings::CollectSettings;
use amiscan_core::ops::create_scan_rule::RuleSettings;
use amiscan_core::ops::export_report::ExportSettings;
use amiscan_core::ops::find_amis::FindSettings;
use amiscan_core::ops::launch_instance::LaunchSettings;
use amiscan_core::ops::start_scan::StartSettings;
use amiscan_core::ops::tag_ami::TagSettings;
use amiscan_core::settings::{EnvReader, FromEnv, MapEnv};
use serde_json::{json, Value};

pub const ACCOUNT: &str = "123456789012";
pub const TAG_PREFIX: &str = "amiscan:";
pub const SELECTION_KEY: &str = "InspectorScan";
pub const SELECTION_VALUE: &str = "true";

/// One test's slice of the emulator.
pub struct Cloud {
    pub endpoint: String,
    pub region: String,
    pub config: SdkConfig,
    /// The access key its requests carry (the harness's administrator's).
    pub key: String,
}

fn test_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with `make test` (tests/with-moto starts the local cloud)")
    })
}

/// The emulator's endpoint, set by `tests/with-moto` (`make test` runs it).
pub fn endpoint() -> String {
    test_env("AMISCAN_TEST_ENDPOINT")
}

/// A request to the local cloud's control server, which plays Inspector.
pub fn control(path: &str, body: Value) {
    let (status, text) = http(
        &test_env("AMISCAN_TEST_CONTROL"),
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    );
    assert!(
        (200..300).contains(&status),
        "control {path}: {status} {text}"
    );
}

pub async fn cloud(region: &str) -> Cloud {
    cloud_as(
        region,
        Credentials::new("testing", "testing", None, None, "test"),
    )
    .await
}

async fn cloud_as(region: &str, credentials: Credentials) -> Cloud {
    let endpoint = endpoint();
    let key = credentials.access_key_id().to_string();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .load()
        .await;
    Cloud {
        endpoint,
        region: region.to_string(),
        config,
        key,
    }
}

/// The emulator as an administrator of another account (a member's).
pub async fn account_cloud(account: &str, region: &str) -> Cloud {
    let (status, text) = http(
        &test_env("AMISCAN_TEST_CONTROL"),
        "/account-admin",
        &[("Content-Type", "application/json")],
        &json!({ "account": account }).to_string(),
    );
    assert_eq!(status, 200, "account-admin: {text}");
    let c: Value = serde_json::from_str(&text).unwrap();
    let text = |k: &str| c[k].as_str().unwrap().to_string();
    let credentials = Credentials::new(
        text("AccessKeyId"),
        text("SecretAccessKey"),
        c["SessionToken"].as_str().map(str::to_string),
        None,
        "harness",
    );
    cloud_as(region, credentials).await
}

/// Form-encodes a query API parameter.
fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 request to the emulator, for the few APIs the project has
/// no SDK crate for (IAM, SQS) and moto's own API.
pub fn http(endpoint: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let authority = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).expect("connect to the emulator");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn auth(service: &str, region: &str) -> String {
    auth_as("testing", service, region)
}

fn auth_as(key: &str, service: &str, region: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={key}/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0")
}

impl Cloud {
    pub fn ec2(&self) -> ec2::Client {
        ec2::Client::new(&self.config)
    }
    pub fn sfn(&self) -> sfn::Client {
        sfn::Client::new(&self.config)
    }
    pub fn sns(&self) -> sns::Client {
        sns::Client::new(&self.config)
    }
    pub fn s3(&self) -> s3::Client {
        s3::Client::new(&self.config)
    }
    pub fn events(&self) -> events::Client {
        events::Client::new(&self.config)
    }
    pub fn inspector(&self) -> inspector::Client {
        inspector::Client::new(&self.config)
    }

    pub fn json_call(&self, service: &str, target: &str, body: Value) -> Value {
        let (status, text) = http(
            &self.endpoint,
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", target),
                ("Authorization", &auth(service, &self.region)),
            ],
            &body.to_string(),
        );
        assert_eq!(status, 200, "{target}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// An IAM query call as this cloud's caller; asserts it succeeded.
    pub fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", form(v)));
        }
        let (status, text) = http(
            &self.endpoint,
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &auth_as(&self.key, "iam", "us-east-1")),
            ],
            &body,
        );
        assert_eq!(status, 200, "{action}: {text}");
        text
    }

    /// Creates an instance profile in the emulator's IAM (RunInstances needs it).
    pub fn create_instance_profile(&self, name: &str) {
        let (status, text) = http(
            &self.endpoint,
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &auth("iam", "us-east-1")),
            ],
            &format!("Action=CreateInstanceProfile&InstanceProfileName={name}&Version=2010-05-08"),
        );
        assert!(
            status == 200 || text.contains("EntityAlreadyExists"),
            "CreateInstanceProfile: {text}"
        );
    }

    /// What the Inspector stand-in (local/launcher.py) answers for an
    /// instance's ListFindings, in pages of at most 100 as Inspector does.
    pub fn set_findings(&self, instance_id: &str, findings: Vec<Value>) {
        control(
            "/findings",
            json!({"instance_id": instance_id, "findings": findings}),
        );
    }

    /// An SQS queue subscribed to the topic, to read back what was published.
    pub async fn subscribe_queue(&self, topic_arn: &str, name: &str) -> String {
        let created = self.json_call("sqs", "AmazonSQS.CreateQueue", json!({"QueueName": name}));
        let url = created["QueueUrl"].as_str().expect("queue url").to_string();
        let arn = format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", self.region);
        self.sns()
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "false")
            .send()
            .await
            .expect("subscribe");
        url
    }

    /// Every SNS notification waiting in the queue, as SNS's envelope.
    pub fn receive_notifications(&self, queue_url: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let out = self.json_call(
                "sqs",
                "AmazonSQS.ReceiveMessage",
                json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10}),
            );
            let messages = out["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for m in messages {
                let body = m["Body"].as_str().unwrap_or_default();
                all.push(serde_json::from_str(body).unwrap_or(Value::Null));
                self.json_call(
                    "sqs",
                    "AmazonSQS.DeleteMessage",
                    json!({"QueueUrl": queue_url, "ReceiptHandle": m["ReceiptHandle"]}),
                );
            }
        }
    }

    pub async fn create_topic(&self, name: &str) -> String {
        self.sns()
            .create_topic()
            .name(name)
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic arn")
    }

    pub async fn create_state_machine(&self, name: &str) -> String {
        self.create_state_machine_of(
            name,
            r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#,
        )
        .await
    }

    /// A state machine whose executions stay running for an hour, as a
    /// scan's execution does.
    pub async fn create_waiting_state_machine(&self, name: &str) -> String {
        self.create_state_machine_of(
            name,
            r#"{"StartAt":"Scan","States":{"Scan":{"Type":"Wait","Seconds":3600,"End":true}}}"#,
        )
        .await
    }

    async fn create_state_machine_of(&self, name: &str, definition: &str) -> String {
        self.sfn()
            .create_state_machine()
            .name(name)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/amiscan-states"))
            .definition(definition)
            .send()
            .await
            .expect("create state machine")
            .state_machine_arn
    }

    pub async fn start_execution(&self, machine_arn: &str, name: &str) {
        self.sfn()
            .start_execution()
            .state_machine_arn(machine_arn)
            .name(name)
            .input("{}")
            .send()
            .await
            .expect("start execution");
    }

    pub async fn create_bucket(&self, name: &str) {
        let mut req = self.s3().create_bucket().bucket(name);
        if self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(s3::types::BucketLocationConstraint::from(
                        self.region.as_str(),
                    ))
                    .build(),
            );
        }
        req.send().await.expect("create bucket");
    }

    pub async fn default_subnet(&self) -> String {
        let out = self.ec2().describe_subnets().send().await.expect("subnets");
        out.subnets()[0].subnet_id().expect("subnet id").to_string()
    }

    pub async fn create_security_group(&self, name: &str) -> String {
        self.ec2()
            .create_security_group()
            .group_name(name)
            .description("amiscan test scan instances")
            .send()
            .await
            .expect("security group")
            .group_id
            .expect("group id")
    }

    /// Registers an AMI of this account and tags it (moto's RegisterImage
    /// ignores TagSpecifications).
    pub async fn register_ami(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let id = self
            .ec2()
            .register_image()
            .name(name)
            .root_device_name("/dev/xvda")
            .send()
            .await
            .expect("register image")
            .image_id
            .expect("image id");
        if !tags.is_empty() {
            self.tag(&id, tags).await;
        }
        id
    }

    /// Registers many AMIs at once and tags them in bulk.
    pub async fn register_amis(&self, names: &[String], tags: &[(&str, &str)]) -> Vec<String> {
        // A few at a time: the emulator is one process on a small machine.
        const AT_ONCE: usize = 16;
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = vec![String::new(); names.len()];
        for (i, name) in names.iter().enumerate() {
            if tasks.len() >= AT_ONCE {
                let (done, id) = tasks.join_next().await.expect("a task").expect("task");
                ids[done] = id;
            }
            let client = self.ec2();
            let name = name.clone();
            tasks.spawn(async move {
                let out = client
                    .register_image()
                    .name(name)
                    .root_device_name("/dev/xvda")
                    .send()
                    .await
                    .expect("register image");
                (i, out.image_id.expect("image id"))
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, id) = done.expect("task");
            ids[i] = id;
        }
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        for chunk in ids.chunks(500) {
            self.ec2()
                .create_tags()
                .set_resources(Some(chunk.to_vec()))
                .set_tags(Some(tags.clone()))
                .send()
                .await
                .expect("create tags");
        }
        ids
    }

    pub async fn tag(&self, resource: &str, tags: &[(&str, &str)]) {
        self.ec2()
            .create_tags()
            .resources(resource)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .send()
            .await
            .expect("create tags");
    }

    /// An AMI that exists but belongs to another account (moto preloads them).
    pub async fn foreign_ami(&self) -> String {
        let out = self
            .ec2()
            .describe_images()
            .owners("amazon")
            .send()
            .await
            .expect("amazon images");
        out.images()[0].image_id().expect("id").to_string()
    }

    pub async fn image_tags(&self, ami_id: &str) -> BTreeMap<String, String> {
        let out = self
            .ec2()
            .describe_images()
            .image_ids(ami_id)
            .send()
            .await
            .expect("describe image");
        out.images()[0]
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub async fn instance(&self, instance_id: &str) -> ec2::types::Instance {
        let out = self
            .ec2()
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .expect("describe instance");
        out.reservations()[0].instances()[0].clone()
    }

    pub async fn instance_state(&self, instance_id: &str) -> String {
        self.instance(instance_id)
            .await
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    }

    /// Every instance in the Region with its state, for before/after checks.
    pub async fn instance_states(&self) -> BTreeMap<String, String> {
        let out = self
            .ec2()
            .describe_instances()
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    pub async fn rule_names(&self) -> Vec<String> {
        let out = self.events().list_rules().send().await.expect("list rules");
        out.rules()
            .iter()
            .filter_map(|r| r.name())
            .map(str::to_string)
            .collect()
    }

    pub async fn object_keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .s3()
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list objects");
        out.contents()
            .iter()
            .filter_map(|o| o.key())
            .map(str::to_string)
            .collect()
    }

    pub async fn object_text(&self, bucket: &str, key: &str) -> (String, Option<String>) {
        let out = self
            .s3()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        let encryption = out.server_side_encryption().map(|e| e.as_str().to_string());
        let bytes = out.body.collect().await.expect("read body").into_bytes();
        (
            String::from_utf8(bytes.to_vec()).expect("utf-8"),
            encryption,
        )
    }

    pub async fn executions(&self, machine_arn: &str) -> Vec<String> {
        let pages = self
            .sfn()
            .list_executions()
            .state_machine_arn(machine_arn)
            .into_paginator()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut names = Vec::new();
        for page in pages {
            let page = page.expect("list executions");
            names.extend(page.executions().iter().map(|e| e.name().to_string()));
        }
        names.sort();
        names
    }

    /// A running instance that carries the scanner tags, as launch-instance
    /// makes them (for cleanup and "already scanning" cases).
    pub async fn scanner_instance(&self, ami_id: &str, scan_id: &str, managed: bool) -> String {
        let base = self.foreign_ami().await;
        let mut tags = vec![
            Tag::builder()
                .key(amiscan_core::tags::AMI_ID_TAG)
                .value(ami_id)
                .build(),
            Tag::builder()
                .key(amiscan_core::tags::SCAN_ID_TAG)
                .value(scan_id)
                .build(),
        ];
        if managed {
            tags.push(
                Tag::builder()
                    .key(amiscan_core::tags::MANAGED_TAG)
                    .value("true")
                    .build(),
            );
        }
        let out = self
            .ec2()
            .run_instances()
            .image_id(base)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                ec2::types::TagSpecification::builder()
                    .resource_type(ec2::types::ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await
            .expect("run instance");
        out.instances()[0].instance_id().expect("id").to_string()
    }

    /// Instances carrying a tag key, any state.
    pub async fn instances_tagged(&self, key: &str, value: &str) -> Vec<ec2::types::Instance> {
        let out = self
            .ec2()
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .collect()
    }
}

/// Settings through the same parser the Lambdas use at start-up.
/// `ACCOUNT_ID` is the emulator's default account unless given.
pub fn env(pairs: &[(&str, &str)]) -> MapEnv {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("ACCOUNT_ID".into())
        .or_insert_with(|| ACCOUNT.to_string());
    EnvReader::from_map(map)
}

/// The findings fixture that the Python suites use too.
const FINDING_FIXTURE: &str = include_str!("../fixtures/finding.json");

/// A complete Inspector finding in the API's JSON, from the shared fixture
/// (its `fill_rules` say how).
pub fn finding(
    n: usize,
    instance_id: &str,
    ami_id: &str,
    severity: &str,
    cve: &str,
    package: &str,
) -> Value {
    let fixture: Value = serde_json::from_str(FINDING_FIXTURE).expect("fixture");
    let mut text = fixture["finding"].to_string();
    for (key, value) in [
        ("n", n.to_string()),
        ("instance_id", instance_id.to_string()),
        ("ami_id", ami_id.to_string()),
        ("severity", severity.to_string()),
        ("cve", cve.to_string()),
        ("package", package.to_string()),
    ] {
        let escaped = Value::String(value).to_string();
        text = text.replace(&format!("{{{key}}}"), &escaped[1..escaped.len() - 1]);
    }
    let mut out: Value = serde_json::from_str(&text).expect("filled fixture");
    let scores = &fixture["scores"];
    let at = 1_763_900_600;
    out["firstObservedAt"] = json!(at - 60);
    out["lastObservedAt"] = json!(at);
    out["inspectorScore"] = scores.get(severity).unwrap_or(&scores["default"]).clone();
    out["exploitAvailable"] = json!(if severity == "CRITICAL" { "YES" } else { "NO" });
    out
}

/// The resources a deployed stack provides, made in one Region.
pub struct Stack {
    pub cloud: Cloud,
    pub topic_arn: String,
    pub queue_url: String,
    /// collect-findings' queue, where the scan rules deliver.
    pub findings_queue_url: String,
    pub findings_queue_arn: String,
    pub launch_machine: String,
    pub report_machine: String,
    pub bucket: String,
    pub subnet: String,
    pub security_group: String,
    pub profile: String,
}

impl Stack {
    pub async fn new(region: &str) -> Stack {
        let cloud = cloud(region).await;
        let topic_arn = cloud.create_topic("amiscan").await;
        let queue_url = cloud.subscribe_queue(&topic_arn, "amiscan-messages").await;
        let created = cloud.json_call(
            "sqs",
            "AmazonSQS.CreateQueue",
            json!({"QueueName": "amiscan-findings"}),
        );
        let findings_queue_url = created["QueueUrl"].as_str().expect("queue url").to_string();
        let findings_queue_arn = format!("arn:aws:sqs:{region}:{ACCOUNT}:amiscan-findings");
        // As the template's queue policy: EventBridge may deliver for the scan rules.
        let policy = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": findings_queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:events:{region}:{ACCOUNT}:rule/amiscan-scan-*")}}}]});
        cloud.json_call(
            "sqs",
            "AmazonSQS.SetQueueAttributes",
            json!({"QueueUrl": findings_queue_url, "Attributes": {"Policy": policy.to_string()}}),
        );
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
            findings_queue_url,
            findings_queue_arn,
            launch_machine,
            report_machine,
            bucket,
            subnet,
            security_group,
            profile,
        }
    }

    pub fn kms_key(&self) -> String {
        format!(
            "arn:aws:kms:{}:{ACCOUNT}:key/0a1b2c3d-test",
            self.cloud.region
        )
    }

    pub fn find_amis(&self, cap: u32) -> find_amis::Function {
        self.find_amis_on(&self.launch_machine, cap, &[])
    }

    /// find-amis starting `machine`, with more settings (SCAN_ON_CREATE, …).
    pub fn find_amis_on(
        &self,
        machine: &str,
        cap: u32,
        more: &[(&str, &str)],
    ) -> find_amis::Function {
        let cap = cap.to_string();
        let mut pairs = vec![
            ("SELECTION_TAG_KEY", SELECTION_KEY),
            ("SELECTION_TAG_VALUE", SELECTION_VALUE),
            ("TAG_PREFIX", TAG_PREFIX),
            ("MAX_CONCURRENT_SCANS", cap.as_str()),
            ("SCAN_MODE", "instance"),
            ("LAUNCH_STATE_MACHINE_ARN", machine),
            ("TOPIC_ARN", &self.topic_arn),
            ("REPORT_BUCKET", &self.bucket),
        ];
        pairs.extend_from_slice(more);
        let settings = FindSettings::from_env(env(&pairs)).unwrap();
        find_amis::Function::new(&self.cloud.config, settings)
    }

    pub fn launch_instance(&self, types: &str) -> launch_instance::Function {
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

    pub fn create_scan_rule(&self) -> create_scan_rule::Function {
        let settings =
            RuleSettings::from_env(env(&[("FINDINGS_QUEUE_ARN", &self.findings_queue_arn)]))
                .unwrap();
        create_scan_rule::Function::new(&self.cloud.config, settings)
    }

    pub fn export_report(&self, format: &str) -> export_report::Function {
        self.export_report_with(format, &[])
    }

    /// export-report with some variables added or replaced.
    pub fn export_report_with(
        &self,
        format: &str,
        more: &[(&str, &str)],
    ) -> export_report::Function {
        let kms = self.kms_key();
        let mut pairs = vec![
            ("REPORT_BUCKET", self.bucket.as_str()),
            ("REPORT_KMS_KEY_ARN", kms.as_str()),
            ("REPORT_FORMAT", format),
            ("SEVERITY_THRESHOLD", "CRITICAL"),
            ("ACCOUNT_ID", ACCOUNT),
            ("INSTANCE_PROFILE", self.profile.as_str()),
        ];
        for &(k, v) in more {
            pairs.retain(|(key, _)| *key != k);
            pairs.push((k, v));
        }
        let settings = ExportSettings::from_env(env(&pairs)).unwrap();
        export_report::Function::new(&self.cloud.config, settings)
    }

    pub fn tag_ami(&self) -> tag_ami::Function {
        let settings = TagSettings::from_env(env(&[
            ("TAG_PREFIX", TAG_PREFIX),
            ("REPORT_BUCKET", &self.bucket),
        ]))
        .unwrap();
        tag_ami::Function::new(&self.cloud.config, settings)
    }

    pub fn cleanup_settings(&self) -> CleanupSettings {
        CleanupSettings::from_env(env(&[
            ("INSTANCE_PROFILE", &self.profile),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap()
    }

    pub fn cleanup(&self) -> cleanup::Function {
        cleanup::Function::new(&self.cloud.config, self.cleanup_settings())
    }

    pub fn check_scan(&self) -> check_scan::Function {
        let settings = CheckSettings::from_env(env(&[])).unwrap();
        check_scan::Function::new(&self.cloud.config, settings)
    }

    pub fn start_scan(&self) -> start_scan::Function {
        let settings = StartSettings::from_env(env(&[
            ("REPORT_BUCKET", &self.bucket),
            ("REPORT_KMS_KEY_ARN", &self.kms_key()),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap();
        start_scan::Function::new(&self.cloud.config, settings)
    }

    pub fn collect_findings(&self) -> collect_findings::Function {
        let settings = CollectSettings::from_env(env(&[
            ("REPORT_BUCKET", &self.bucket),
            ("REPORT_KMS_KEY_ARN", &self.kms_key()),
            ("ACCOUNT_ID", ACCOUNT),
        ]))
        .unwrap();
        collect_findings::Function::new(&self.cloud.config, settings)
    }

    /// A selected AMI and its snapshot scan, started as launch-scan's first
    /// snapshot step starts it.
    pub async fn started_snapshot_scan(&self) -> (String, amiscan_core::model::ScanContext) {
        let ami = self
            .cloud
            .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
            .await;
        let started = self
            .start_scan()
            .handle(Stack::snapshot_input(&ami))
            .await
            .unwrap();
        (ami, serde_json::from_value(started).unwrap())
    }

    /// A snapshot scan's context as launch-scan's first step receives it.
    pub fn snapshot_input(ami_id: &str) -> Value {
        json!({"scan_id": format!("{ami_id}-20261123"), "ami_id": ami_id, "scan_mode": "snapshot"})
    }

    pub fn notifications(&self) -> Vec<Value> {
        self.cloud.receive_notifications(&self.queue_url)
    }

    /// Everything a function could change, for "nothing changed" checks.
    pub async fn snapshot(&self, ami_ids: &[&str]) -> Value {
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
    pub fn scan_input(ami_id: &str) -> Value {
        json!({"scan_id": format!("{ami_id}-20261123"), "ami_id": ami_id})
    }

    /// Launches a scan instance and creates its rule, as launch-scan does.
    /// Launches a scan instance, as launch-scan's first step does.
    pub async fn launched_instance(&self, ami_id: &str) -> amiscan_core::model::ScanContext {
        self.launch_instance("t3.small")
            .handle(Stack::scan_input(ami_id))
            .await
            .unwrap()
    }

    /// A launched instance whose rule is made, as launch-scan's wait makes
    /// it (with a task token of no execution).
    pub async fn launched_scan(&self, ami_id: &str) -> Value {
        let scan = self.launched_instance(ami_id).await;
        self.create_scan_rule()
            .handle(json!({"scan": scan, "task_token": "a-token-of-no-execution"}))
            .await
            .unwrap();
        serde_json::to_value(scan).unwrap()
    }
}

pub fn error_type(err: amiscan_core::Error) -> String {
    err.error_type().to_string()
}

pub fn message_of(envelope: &Value) -> (String, Value, String) {
    let subject = envelope["Subject"].as_str().unwrap_or_default().to_string();
    let body: Value = serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap();
    let event_type = envelope["MessageAttributes"]["event_type"]["Value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (subject, body, event_type)
}
