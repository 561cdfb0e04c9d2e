//! launch-instance against the local cloud.

use std::collections::BTreeMap;

use amiscan_core::lambda::Handler;
use amiscan_tests::{error_type, Stack, SELECTION_KEY, SELECTION_VALUE};
use chrono::Duration;
use serde_json::{json, Value};

#[tokio::test]
async fn launch_instance_starts_a_locked_down_tagged_instance() {
    let stack = Stack::new("us-west-1").await;
    let ami = stack
        .cloud
        .register_ami("golden-al2023", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let input: Value =
        serde_json::from_str(include_str!("../../events/launch-instance/scan.json")).unwrap();
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

#[tokio::test]
async fn a_launch_whose_instance_terminates_at_once_fails_with_ec2s_reason() {
    let stack = Stack::new("me-central-1").await;
    let ami = stack.cloud.register_ami("golden-cmk", &[]).await;
    // What EC2 does when it may not use the key of the AMI's snapshots.
    amiscan_tests::control(
        "/terminate-at-launch",
        json!({"image_id": ami, "code": "Client.InvalidKMSKey.InvalidState",
               "message": "The KMS key provided is in an incorrect state"}),
    );
    let err = stack
        .launch_instance("t3.small")
        .handle(Stack::scan_input(&ami))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(error_type(err), "AmiNotUsable");
    assert!(
        text.contains("terminated at launch: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"),
        "{text}"
    );
    let instances = stack.cloud.instances_tagged("amiscan:ami-id", &ami).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str()),
        Some("terminated")
    );
}
