//! Test harness over the local AWS emulator that `tests/with-moto` starts:
//! SDK configuration for it, and seeding and reading helpers. Each test works
//! in a Region of its own, so tests run in parallel without seeing each other.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;

use amiscan_core::aws::aws_config::{self, BehaviorVersion, Region};
use amiscan_core::aws::ec2::config::Credentials;
use amiscan_core::aws::ec2::types::{Filter, Tag};
use amiscan_core::aws::{ec2, eventbridge, inspector2, s3, sfn, sns, SdkConfig};
use amiscan_core::settings::{EnvReader, MapEnv};
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
}

/// The emulator's endpoint, set by `tests/with-moto` (`make test` runs it).
pub fn endpoint() -> String {
    std::env::var("AMISCAN_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("AMISCAN_TEST_ENDPOINT is not set: run these tests with `make test` (tests/with-moto starts the emulator)")
    })
}

pub async fn cloud(region: &str) -> Cloud {
    let endpoint = endpoint();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    Cloud {
        endpoint,
        region: region.to_string(),
        config,
    }
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
    format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0")
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
    pub fn events(&self) -> eventbridge::Client {
        eventbridge::Client::new(&self.config)
    }
    pub fn inspector(&self) -> inspector2::Client {
        inspector2::Client::new(&self.config)
    }

    fn json_call(&self, service: &str, target: &str, body: Value) -> Value {
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

    /// Queues the answer to the next distinct ListFindings call.
    pub fn queue_findings(&self, findings: Vec<Value>) {
        let body = json!({"results": [findings], "region": self.region, "account_id": ACCOUNT});
        let (status, text) = http(
            &self.endpoint,
            "/moto-api/static/inspector2/findings-results",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        );
        assert_eq!(status, 201, "queueing findings: {text}");
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
        self.sfn()
            .create_state_machine()
            .name(name)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/amiscan-states"))
            .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#)
            .send()
            .await
            .expect("create state machine")
            .state_machine_arn
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
                .key(amiscan_core::naming::AMI_ID_TAG)
                .value(ami_id)
                .build(),
            Tag::builder()
                .key(amiscan_core::naming::SCAN_ID_TAG)
                .value(scan_id)
                .build(),
        ];
        if managed {
            tags.push(
                Tag::builder()
                    .key(amiscan_core::naming::MANAGED_TAG)
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
pub fn env(pairs: &[(&str, &str)]) -> MapEnv {
    EnvReader::from_map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    )
}

/// A complete Inspector finding in the API's JSON, as moto hands it back.
pub fn finding(
    n: usize,
    instance_id: &str,
    ami_id: &str,
    severity: &str,
    cve: &str,
    package: &str,
) -> Value {
    json!({
        "awsAccountId": ACCOUNT,
        "findingArn": format!("arn:aws:inspector2:us-east-1:{ACCOUNT}:finding/{instance_id}-{n}"),
        "type": "PACKAGE_VULNERABILITY",
        "title": format!("{cve} - {package}"),
        "description": format!("{package}: a flaw, \"quoted\", with a comma"),
        "severity": severity,
        "status": "ACTIVE",
        "firstObservedAt": 1_763_900_000,
        "lastObservedAt": 1_763_900_600,
        "inspectorScore": 7.5,
        "fixAvailable": "YES",
        "exploitAvailable": if severity == "CRITICAL" { "YES" } else { "NO" },
        "epss": {"score": 0.25},
        "remediation": {"recommendation": {"text": format!("Upgrade {package}")}},
        "resources": [{
            "type": "AWS_EC2_INSTANCE",
            "id": instance_id,
            "details": {"awsEc2Instance": {"imageId": ami_id, "platform": "UBUNTU_22_04", "type": "t3.small"}}
        }],
        "packageVulnerabilityDetails": {
            "vulnerabilityId": cve,
            "source": "UBUNTU_CVE",
            "cvss": [{"baseScore": 9.1, "scoringVector": "CVSS:3.1/AV:N", "version": "3.1", "source": "NVD"}],
            "referenceUrls": [format!("https://ubuntu.com/security/{cve}")],
            "vulnerablePackages": [{"name": package, "version": "1.0.0", "epoch": 0, "release": "1ubuntu1", "fixedInVersion": "1.0.1-1ubuntu1"}]
        }
    })
}
