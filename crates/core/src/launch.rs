//! launch-instance: boot the AMI on one short-lived, locked-down instance that
//! Inspector can scan, trying each configured instance type in turn.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::aws::ec2;
use crate::aws::ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceType, ResourceType, ShutdownBehavior, Tag,
    TagSpecification,
};
use crate::error::{Error, Result};
use crate::find::{describe_instances, filter, lookup_amis, LIVE_STATES, NOT_FOUND};
use crate::model::ScanContext;
use crate::naming;
use crate::settings::{InstanceProfile, LaunchSettings};

/// RunInstances error codes after which the next instance type is worth trying.
pub fn is_capacity_error(code: &str) -> bool {
    matches!(code, "InsufficientInstanceCapacity" | "Unsupported")
}

/// The tags on the instance and its volumes: they mark it as amiscan's for
/// the IAM conditions, the cleanup guard and the sweeper.
pub fn scanner_tags(scan: &ScanContext) -> Vec<Tag> {
    let pair = |k: String, v: &str| Tag::builder().key(k).value(naming::tag_value(v)).build();
    vec![
        pair(naming::MANAGED_TAG.into(), naming::MANAGED_VALUE),
        pair(naming::AMI_ID_TAG.into(), &scan.ami_id),
        pair(naming::SCAN_ID_TAG.into(), &scan.scan_id),
        pair("Name".into(), &format!("amiscan {}", scan.ami_id)),
    ]
}

/// Every EBS mapping of the AMI (the root device among them), encrypted and
/// deleted with the instance. The AMI's snapshot and size are repeated so
/// that the override only changes those two settings.
pub fn block_devices(image: &ec2::types::Image) -> Vec<BlockDeviceMapping> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| Some((m.device_name()?, m.ebs()?)))
        .map(|(name, ebs)| {
            BlockDeviceMapping::builder()
                .device_name(name)
                .ebs(
                    EbsBlockDevice::builder()
                        .set_snapshot_id(ebs.snapshot_id().map(str::to_string))
                        .set_volume_size(ebs.volume_size())
                        .set_volume_type(ebs.volume_type().cloned())
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build()
        })
        .collect()
}

/// Checks that the AMI exists, is this account's and is available.
pub async fn usable_image(client: &ec2::Client, ami_id: &str) -> Result<ec2::types::Image> {
    let (mut images, skipped) = lookup_amis(client, &[ami_id.to_string()]).await?;
    if let Some(skip) = skipped.into_iter().next() {
        return Err(if skip.reason == NOT_FOUND {
            Error::NotFound {
                kind: "AMI",
                id: ami_id.into(),
            }
        } else {
            Error::AmiNotUsable {
                ami_id: ami_id.into(),
                reason: skip.reason,
            }
        });
    }
    let image = images.pop().ok_or_else(|| Error::NotFound {
        kind: "AMI",
        id: ami_id.into(),
    })?;
    let state = image.state().map(|s| s.as_str()).unwrap_or("unknown");
    if state != "available" {
        return Err(Error::AmiNotUsable {
            ami_id: ami_id.into(),
            reason: format!("state is {state} (not available)"),
        });
    }
    Ok(image)
}

fn run_request(
    client: &ec2::Client,
    settings: &LaunchSettings,
    scan: &ScanContext,
    image: &ec2::types::Image,
    instance_type: &str,
    type_index: usize,
) -> ec2::operation::run_instances::builders::RunInstancesFluentBuilder {
    let tags = scanner_tags(scan);
    let tag_spec = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags.clone()))
            .build()
    };
    let profile = match &settings.instance_profile {
        InstanceProfile::Arn(arn) => IamInstanceProfileSpecification::builder().arn(arn),
        InstanceProfile::Name(name) => IamInstanceProfileSpecification::builder().name(name),
    }
    .build();
    client
        .run_instances()
        .image_id(&scan.ami_id)
        .instance_type(InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        .client_token(naming::client_token(&scan.scan_id, type_index))
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&settings.subnet_id.0)
                .groups(&settings.security_group_id.0)
                .associate_public_ip_address(false)
                .delete_on_termination(true)
                .build(),
        )
        .iam_instance_profile(profile)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .http_put_response_hop_limit(1)
                .build(),
        )
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .set_block_device_mappings(Some(block_devices(image)))
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
}

/// Launches the scan instance and returns the context with it filled in.
pub async fn launch(
    client: &ec2::Client,
    settings: &LaunchSettings,
    scan: ScanContext,
) -> Result<ScanContext> {
    scan.validate("")?;
    let image = usable_image(client, &scan.ami_id).await?;
    // A retried task finds the instance its first attempt launched. The
    // ClientToken guards the same on EC2 itself; this also covers a retry
    // after the token's type was given up for the next one.
    let existing = describe_instances(
        client,
        vec![
            filter(
                &format!("tag:{}", naming::SCAN_ID_TAG),
                [scan.scan_id.as_str()],
            ),
            filter(
                &format!("tag:{}", naming::MANAGED_TAG),
                [naming::MANAGED_VALUE],
            ),
            filter("instance-state-name", LIVE_STATES),
        ],
    )
    .await?;
    if let Some(instance) = existing.first() {
        info!(ami_id = %scan.ami_id, instance_id = instance.instance_id().unwrap_or_default(), "scan instance already launched");
        return Ok(launched(
            scan,
            instance,
            &image,
            settings.scan_timeout_minutes,
        ));
    }
    let mut tried = Vec::new();
    let mut last_error = String::new();
    for (index, instance_type) in settings.instance_types.iter().enumerate() {
        let result = run_request(client, settings, &scan, &image, instance_type, index)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let err = Error::from_sdk("RunInstances", err);
                if err.aws_code().is_some_and(is_capacity_error) {
                    warn!(ami_id = %scan.ami_id, instance_type = %instance_type, error = %err, "no capacity; trying the next type");
                    tried.push(instance_type.clone());
                    last_error = err.to_string();
                    continue;
                }
                return Err(err);
            }
        };
        let instance = out
            .instances()
            .first()
            .filter(|i| i.instance_id().is_some())
            .ok_or_else(|| Error::Internal("RunInstances returned no instance".into()))?;
        info!(ami_id = %scan.ami_id, instance_id = instance.instance_id().unwrap_or_default(), instance_type = %instance_type, "launched");
        return Ok(launched(
            scan,
            instance,
            &image,
            settings.scan_timeout_minutes,
        ));
    }
    Err(Error::CapacityUnavailable { tried, last_error })
}

fn launched(
    mut scan: ScanContext,
    instance: &ec2::types::Instance,
    image: &ec2::types::Image,
    timeout_minutes: u32,
) -> ScanContext {
    let launched_at = instance
        .launch_time()
        .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_else(Utc::now);
    scan.instance_id = instance.instance_id().map(str::to_string);
    scan.instance_type = instance.instance_type().map(|t| t.as_str().to_string());
    scan.launched_at = Some(launched_at);
    scan.deadline_at = Some(launched_at + chrono::Duration::minutes(i64::from(timeout_minutes)));
    scan.ami_name = image.name().map(str::to_string).or(scan.ami_name);
    scan.platform = image
        .platform_details()
        .map(str::to_string)
        .or(scan.platform);
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ec2::error::ErrorMetadata;
    use crate::aws::ec2::operation::describe_images::DescribeImagesOutput;
    use crate::aws::ec2::operation::describe_instances::DescribeInstancesOutput;
    use crate::aws::ec2::operation::run_instances::{RunInstancesError, RunInstancesOutput};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    const AMI: &str = "ami-0123456789abcdef0";

    fn settings() -> LaunchSettings {
        LaunchSettings {
            instance_types: vec!["t3.small".into(), "t3a.small".into()],
            subnet_id: "subnet-0abc".parse().unwrap(),
            security_group_id: "sg-0abc".parse().unwrap(),
            instance_profile: "amiscan-scanner".parse().unwrap(),
            scan_timeout_minutes: 120,
        }
    }

    fn scan() -> ScanContext {
        serde_json::from_str(include_str!("../../../events/launch-instance/scan.json")).unwrap()
    }

    fn the_image() -> ec2::types::Image {
        ec2::types::Image::builder()
            .image_id(AMI)
            .state(ec2::types::ImageState::Available)
            .root_device_name("/dev/sda1")
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(
                        EbsBlockDevice::builder()
                            .snapshot_id("snap-1")
                            .volume_size(8)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    /// The checks before a launch: the AMI is visible, owned, and no
    /// instance of this scan exists yet.
    fn checks() -> [Rule; 3] {
        let images = || DescribeImagesOutput::builder().images(the_image()).build();
        [
            mock!(ec2::Client::describe_images).then_output(images),
            mock!(ec2::Client::describe_images).then_output(images),
            mock!(ec2::Client::describe_instances)
                .then_output(|| DescribeInstancesOutput::builder().build()),
        ]
    }

    fn capacity_error(r: &ec2::operation::run_instances::RunInstancesInput) -> bool {
        r.instance_type() == Some(&InstanceType::from("t3.small"))
            && r.client_token() == Some("amiscan-ami-0123456789abcdef0-20261127-0")
    }

    #[tokio::test]
    async fn a_capacity_error_moves_on_to_the_next_type_with_its_own_token() {
        let [visible, owned, existing] = checks();
        let no_capacity = mock!(ec2::Client::run_instances)
            .match_requests(capacity_error)
            .then_error(|| {
                RunInstancesError::generic(
                    ErrorMetadata::builder()
                        .code("InsufficientInstanceCapacity")
                        .build(),
                )
            });
        let launched = mock!(ec2::Client::run_instances)
            .match_requests(|r| {
                let metadata = r.metadata_options().unwrap();
                let nic = &r.network_interfaces()[0];
                let root = &r.block_device_mappings()[0];
                let tags: Vec<_> = r
                    .tag_specifications()
                    .iter()
                    .filter_map(|t| t.resource_type())
                    .collect();
                r.instance_type() == Some(&InstanceType::from("t3a.small"))
                    && r.client_token() == Some("amiscan-ami-0123456789abcdef0-20261127-1")
                    && metadata.http_tokens() == Some(&HttpTokensState::Required)
                    && nic.associate_public_ip_address() == Some(false)
                    && nic.groups() == ["sg-0abc"]
                    && root.ebs().and_then(|e| e.encrypted()) == Some(true)
                    && root.ebs().and_then(|e| e.delete_on_termination()) == Some(true)
                    && r.instance_initiated_shutdown_behavior()
                        == Some(&ShutdownBehavior::Terminate)
                    && r.iam_instance_profile().and_then(|p| p.name()) == Some("amiscan-scanner")
                    && tags == [&ResourceType::Instance, &ResourceType::Volume]
            })
            .then_output(|| {
                RunInstancesOutput::builder()
                    .instances(
                        ec2::types::Instance::builder()
                            .instance_id("i-0123456789abcdef0")
                            .instance_type(InstanceType::from("t3a.small"))
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(
            ec2,
            RuleMode::Sequential,
            [&visible, &owned, &existing, &no_capacity, &launched]
        );
        let out = launch(&client, &settings(), scan()).await.unwrap();
        assert_eq!(out.instance_id.as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(out.instance_type.as_deref(), Some("t3a.small"));
        assert_eq!((no_capacity.num_calls(), launched.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn no_capacity_in_any_type_is_capacity_unavailable() {
        let [visible, owned, existing] = checks();
        let unsupported = || {
            RunInstancesError::generic(
                ErrorMetadata::builder()
                    .code("Unsupported")
                    .message("not in this zone")
                    .build(),
            )
        };
        let first = mock!(ec2::Client::run_instances).then_error(unsupported);
        let second = mock!(ec2::Client::run_instances).then_error(unsupported);
        let client = mock_client!(
            ec2,
            RuleMode::Sequential,
            [&visible, &owned, &existing, &first, &second]
        );
        let err = launch(&client, &settings(), scan()).await.unwrap_err();
        assert_eq!(err.error_type(), "CapacityUnavailable");
        assert!(err.to_string().contains("t3.small, t3a.small"), "{err}");
    }

    #[tokio::test]
    async fn any_other_launch_error_stops_at_once() {
        let [visible, owned, existing] = checks();
        let denied = mock!(ec2::Client::run_instances).then_error(|| {
            RunInstancesError::generic(
                ErrorMetadata::builder()
                    .code("UnauthorizedOperation")
                    .build(),
            )
        });
        let client = mock_client!(
            ec2,
            RuleMode::Sequential,
            [&visible, &owned, &existing, &denied]
        );
        let err = launch(&client, &settings(), scan()).await.unwrap_err();
        assert_eq!(err.error_type(), "AwsError");
        assert_eq!(err.aws_code(), Some("UnauthorizedOperation"));
        assert_eq!(denied.num_calls(), 1);
    }

    #[test]
    fn every_ebs_mapping_is_encrypted_and_deleted_with_the_instance() {
        let mappings = block_devices(&the_image());
        assert_eq!(mappings.len(), 1);
        let ebs = mappings[0].ebs().unwrap();
        assert_eq!(
            (ebs.encrypted(), ebs.delete_on_termination()),
            (Some(true), Some(true))
        );
        assert_eq!(ebs.snapshot_id(), Some("snap-1"));
    }
}
