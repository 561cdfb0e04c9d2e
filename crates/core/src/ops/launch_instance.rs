//! launch-instance: boot the AMI on one short-lived, locked-down instance that
//! Inspector can scan, trying each configured instance type in turn.

use chrono::Utc;
use tracing::{info, warn};

use crate::aws::ec2::types::{BlockDeviceMapping, EbsBlockDevice, Image};
use crate::aws::ec2::{self, Boot, Instances, Launch, Profile, ScannerInstance};
use crate::error::{Error, Result};
use crate::model::{AmiId, Place, RuleName, ScanContext};
use crate::naming;
use crate::settings::{
    vars, EnvReader, FromEnv, Home, InstanceProfile, InstanceTypes, ScanTimeoutMinutes,
    SecurityGroupId, SubnetId,
};
use crate::tags;

/// launch-instance: where and how the temporary instance runs.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    pub instance_types: Vec<String>,
    pub subnet_id: SubnetId,
    pub security_group_id: SecurityGroupId,
    pub instance_profile: InstanceProfile,
    pub scan_timeout_minutes: u32,
    pub home: Home,
}

impl FromEnv for LaunchSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let types: Option<InstanceTypes> = env.required(vars::INSTANCE_TYPES);
        let subnet: Option<SubnetId> = env.required(vars::SUBNET_ID);
        let group: Option<SecurityGroupId> = env.required(vars::SECURITY_GROUP_ID);
        let profile: Option<InstanceProfile> = env.required(vars::INSTANCE_PROFILE);
        let timeout: Option<ScanTimeoutMinutes> = env.required(vars::SCAN_TIMEOUT_MINUTES);
        let home = Home::read(&mut env);
        env.finish(|| {
            Some(LaunchSettings {
                instance_types: types?.0,
                subnet_id: subnet?,
                security_group_id: group?,
                instance_profile: profile?,
                scan_timeout_minutes: timeout?.0,
                home: home?,
            })
        })
    }
}

/// Where the instance runs: a subnet, a security group and an instance
/// profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub subnet_id: String,
    pub security_group_id: String,
    pub profile: InstanceProfile,
}

/// The network of a scan at `place`: the hub stack's at home; elsewhere
/// member.yaml's in that account and Region (its scanner group, found by
/// its tags, and its Region's profile). A place without one cannot scan
/// on an instance: the AMI is not usable there.
pub async fn network_at(
    client: &ec2::Client,
    settings: &LaunchSettings,
    scan: &ScanContext,
    home: &Place,
) -> Result<Network> {
    let place = scan.place(home);
    if &place == home {
        return Ok(Network {
            subnet_id: settings.subnet_id.0.clone(),
            security_group_id: settings.security_group_id.0.clone(),
            profile: settings.instance_profile.clone(),
        });
    }
    match ec2::scanner_network(client).await? {
        Some(found) => Ok(Network {
            subnet_id: found.subnet_id,
            security_group_id: found.security_group_id,
            profile: InstanceProfile::of_member(&place),
        }),
        None => Err(Error::AmiNotUsable {
            ami_id: scan.ami_id.to_string(),
            reason: place.no_subnet(),
        }),
    }
}

/// How long a new instance has to reach `running`. An image EC2 cannot
/// start (snapshots under a key it may not use) terminates within seconds;
/// one still pending after this is left to the scan's deadline.
pub const BOOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// RunInstances error codes after which the next instance type is worth trying.
pub fn is_capacity_error(code: &str) -> bool {
    matches!(code, "InsufficientInstanceCapacity" | "Unsupported")
}

/// The tags on the instance and its volumes: the scanner's tags, and a Name
/// a person recognises in the console.
pub fn instance_tags(scan: &ScanContext) -> Vec<(String, String)> {
    let mut out = tags::scanner_tags(&scan.ami_id, &scan.scan_id);
    out.push(("Name".into(), format!("amiscan {}", scan.ami_id)));
    out.into_iter()
        .map(|(k, v)| (k, tags::tag_value(&v)))
        .collect()
}

/// Every EBS mapping of the AMI (the root device among them), encrypted and
/// deleted with the instance. The AMI's snapshot and size are repeated so
/// that the override only changes those two settings.
pub fn block_devices(image: &Image) -> Vec<BlockDeviceMapping> {
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

/// The AMI, when it exists, is this account's and is available.
async fn usable_image(client: &ec2::Client, ami_id: &AmiId) -> Result<Image> {
    let mut lookup = ec2::lookup_images(client, std::slice::from_ref(ami_id)).await?;
    let Some(image) = lookup.owned.pop() else {
        return Err(if lookup.foreign.is_empty() {
            Error::NotFound {
                kind: "AMI",
                id: ami_id.to_string(),
            }
        } else {
            Error::AmiNotUsable {
                ami_id: ami_id.to_string(),
                reason: "not owned by this account".into(),
            }
        });
    };
    let state = image.state().map(|s| s.as_str()).unwrap_or("unknown");
    if state != "available" {
        return Err(Error::AmiNotUsable {
            ami_id: ami_id.to_string(),
            reason: format!("state is {state} (not available)"),
        });
    }
    Ok(image)
}

/// The context once the instance runs: its id, type, launch time and the
/// scan's deadline, and the image's name and platform.
pub fn launched(
    mut scan: ScanContext,
    instance: ScannerInstance,
    image: &Image,
    timeout_minutes: u32,
) -> ScanContext {
    let launched_at = instance.launch_time.unwrap_or_else(Utc::now);
    scan.instance_id = Some(instance.instance_id.clone());
    scan.instance_type = instance.instance_type;
    scan.launched_at = Some(launched_at);
    scan.deadline_at = Some(launched_at + chrono::Duration::minutes(i64::from(timeout_minutes)));
    // launch-scan waits this long on its task token for Inspector's event.
    scan.wait_seconds = Some(u64::from(timeout_minutes) * 60);
    scan.rule_name = Some(RuleName::for_instance(&instance.instance_id));
    scan.ami_name = image.name().map(str::to_string).or(scan.ami_name);
    scan.platform = image
        .platform_details()
        .map(str::to_string)
        .or(scan.platform);
    scan
}

/// Launches the scan instance and returns the context with it filled in.
pub async fn run(
    client: &ec2::Client,
    settings: &LaunchSettings,
    network: &Network,
    scan: ScanContext,
) -> Result<ScanContext> {
    let image = usable_image(client, &scan.ami_id).await?;
    // A retried task finds the instance its first attempt launched. The
    // ClientToken guards the same on EC2 itself; this also covers a retry
    // after the token's type was given up for the next one.
    let existing = ec2::describe_instances(
        client,
        Instances::Scanners {
            scan_id: Some(&scan.scan_id),
            live_only: true,
        },
    )
    .await?;
    if let Some(instance) = existing.into_iter().next() {
        info!(ami_id = %scan.ami_id, instance_id = %instance.instance_id, "scan instance already launched");
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
        let launch = Launch {
            ami_id: &scan.ami_id,
            instance_type,
            client_token: naming::client_token(&scan.scan_id, index),
            subnet_id: &network.subnet_id,
            security_group_id: &network.security_group_id,
            profile: match &network.profile {
                InstanceProfile::Arn(arn) => Profile::Arn(arn),
                InstanceProfile::Name(name) => Profile::Name(name),
            },
            block_devices: block_devices(&image),
            tags: instance_tags(&scan),
        };
        match ec2::run_instance(client, launch).await {
            Ok(instance) => {
                info!(ami_id = %scan.ami_id, instance_id = %instance.instance_id, instance_type = %instance_type, "launched");
                match ec2::wait_until_running(client, &instance.instance_id, BOOT_WAIT).await? {
                    Boot::Running => {}
                    Boot::Pending => {
                        warn!(instance_id = %instance.instance_id, "still pending; the scan's deadline covers it")
                    }
                    // Reported now, not as TIMED_OUT at the deadline.
                    Boot::Stopped { state, reason } => {
                        return Err(Error::AmiNotUsable {
                            ami_id: scan.ami_id.to_string(),
                            reason: format!(
                                "its instance {} was {state} at launch: {reason}",
                                instance.instance_id
                            ),
                        })
                    }
                }
                return Ok(launched(
                    scan,
                    instance,
                    &image,
                    settings.scan_timeout_minutes,
                ));
            }
            Err(err) if err.aws_code().is_some_and(is_capacity_error) => {
                warn!(ami_id = %scan.ami_id, instance_type = %instance_type, error = %err, "no capacity; trying the next type");
                tried.push(instance_type.clone());
                last_error = err.to_string();
            }
            Err(err) => return Err(err),
        }
    }
    Err(Error::CapacityUnavailable { tried, last_error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ec2::error::ErrorMetadata;
    use crate::aws::ec2::operation::describe_images::DescribeImagesOutput;
    use crate::aws::ec2::operation::describe_instances::DescribeInstancesOutput;
    use crate::aws::ec2::operation::run_instances::{RunInstancesError, RunInstancesOutput};
    use crate::aws::ec2::types::{HttpTokensState, InstanceType, ResourceType, ShutdownBehavior};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    const AMI: &str = "ami-0123456789abcdef0";

    fn settings() -> LaunchSettings {
        LaunchSettings {
            instance_types: vec!["t3.small".into(), "t3a.small".into()],
            subnet_id: "subnet-0abc".parse().unwrap(),
            security_group_id: "sg-0abc".parse().unwrap(),
            instance_profile: "amiscan-scanner".parse().unwrap(),
            scan_timeout_minutes: 120,
            home: Home::for_tests(),
        }
    }

    fn network() -> Network {
        let settings = settings();
        Network {
            subnet_id: settings.subnet_id.0,
            security_group_id: settings.security_group_id.0,
            profile: settings.instance_profile,
        }
    }

    fn scan() -> ScanContext {
        serde_json::from_str(include_str!("../../../../events/launch-instance/scan.json")).unwrap()
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

    /// The checks before a launch: the AMI is the account's own, and no
    /// instance of this scan exists yet.
    fn checks() -> [Rule; 2] {
        let images = || DescribeImagesOutput::builder().images(the_image()).build();
        [
            mock!(ec2::Client::describe_images)
                .match_requests(|r| r.owners() == ["self"])
                .then_output(images),
            mock!(ec2::Client::describe_instances)
                .then_output(|| DescribeInstancesOutput::builder().build()),
        ]
    }

    fn described(state: &str, reason: Option<(&str, &str)>) -> DescribeInstancesOutput {
        let mut instance = ec2::types::Instance::builder()
            .instance_id("i-0123456789abcdef0")
            .state(
                ec2::types::InstanceState::builder()
                    .name(ec2::types::InstanceStateName::from(state))
                    .build(),
            );
        if let Some((code, message)) = reason {
            instance = instance.state_reason(
                ec2::types::StateReason::builder()
                    .code(code)
                    .message(message)
                    .build(),
            );
        }
        DescribeInstancesOutput::builder()
            .reservations(
                ec2::types::Reservation::builder()
                    .instances(instance.build())
                    .build(),
            )
            .build()
    }

    /// The waiter's first look: the instance runs.
    fn running() -> Rule {
        mock!(ec2::Client::describe_instances)
            .match_requests(|r| r.instance_ids() == ["i-0123456789abcdef0"])
            .then_output(|| described("running", None))
    }

    #[tokio::test]
    async fn away_from_home_the_network_is_member_yamls_group_and_its_subnet_or_none() {
        use crate::aws::ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
        use crate::aws::ec2::types::SecurityGroup;
        let home = Place {
            account_id: "123456789012".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
        };
        let mut away = scan();
        away.account_id = Some("111111111111".parse().unwrap());
        away.region = Some("eu-west-1".parse().unwrap());
        let group = |id: &str, subnet: Option<&str>| {
            let mut tags = vec![ec2::types::Tag::builder()
                .key("amiscan:managed")
                .value("true")
                .build()];
            if let Some(subnet) = subnet {
                tags.push(
                    ec2::types::Tag::builder()
                        .key("amiscan:scanner-subnet")
                        .value(subnet)
                        .build(),
                );
            }
            SecurityGroup::builder()
                .group_id(id)
                .set_tags(Some(tags))
                .build()
        };
        // The group that names its subnet (the lowest id of those that do).
        let found = mock!(ec2::Client::describe_security_groups)
            .match_requests(|r| r.filters().len() == 2)
            .then_output(move || {
                DescribeSecurityGroupsOutput::builder()
                    .security_groups(group("sg-0b", Some("subnet-0member")))
                    .security_groups(group("sg-0a", Some("subnet-0member")))
                    .security_groups(group("sg-00", None))
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, [&found]);
        let network = network_at(&client, &settings(), &away, &home)
            .await
            .unwrap();
        assert_eq!(
            network,
            Network {
                subnet_id: "subnet-0member".into(),
                security_group_id: "sg-0a".into(),
                profile: InstanceProfile::Arn(
                    "arn:aws:iam::111111111111:instance-profile/amiscan-scanner-eu-west-1".into()
                ),
            }
        );
        // None there: not usable, saying why.
        let none = mock!(ec2::Client::describe_security_groups)
            .then_output(|| DescribeSecurityGroupsOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, [&none]);
        let err = network_at(&client, &settings(), &away, &home)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "AmiNotUsable");
        assert!(
            err.to_string()
                .contains("no subnet for instance scans in 111111111111/eu-west-1"),
            "{err}"
        );
        // At home: the stack's own, with no call.
        let network = network_at(&client, &settings(), &scan(), &home)
            .await
            .unwrap();
        assert_eq!(network, self::network());
        assert_eq!(none.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_instance_that_terminates_at_launch_fails_the_launch_with_ec2s_reason() {
        let [owned, existing] = checks();
        let launched = mock!(ec2::Client::run_instances).then_output(|| {
            RunInstancesOutput::builder()
                .instances(
                    ec2::types::Instance::builder()
                        .instance_id("i-0123456789abcdef0")
                        .build(),
                )
                .build()
        });
        let terminated = mock!(ec2::Client::describe_instances).then_output(|| {
            described(
                "terminated",
                Some((
                    "Client.InvalidKMSKey.InvalidState",
                    "The KMS key provided is in an incorrect state",
                )),
            )
        });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&owned, &existing, &launched, &terminated]
        );
        let err = run(&client, &settings(), &network(), scan())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "AmiNotUsable");
        assert!(
            err.to_string().contains("i-0123456789abcdef0 was terminated at launch: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"),
            "{err}"
        );
        assert_eq!((launched.num_calls(), terminated.num_calls()), (1, 1));
    }

    fn capacity_error(r: &ec2::operation::run_instances::RunInstancesInput) -> bool {
        r.instance_type() == Some(&InstanceType::from("t3.small"))
            && r.client_token() == Some("amiscan-ami-0123456789abcdef0-20261127-0")
    }

    #[tokio::test]
    async fn a_capacity_error_moves_on_to_the_next_type_with_its_own_token() {
        let [owned, existing] = checks();
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
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&owned, &existing, &no_capacity, &launched, &running()]
        );
        let out = run(&client, &settings(), &network(), scan()).await.unwrap();
        assert_eq!(out.instance_id.unwrap(), "i-0123456789abcdef0");
        assert_eq!(out.instance_type.as_deref(), Some("t3a.small"));
        assert_eq!((no_capacity.num_calls(), launched.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn no_capacity_in_any_type_is_capacity_unavailable() {
        let [owned, existing] = checks();
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
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&owned, &existing, &first, &second]
        );
        let err = run(&client, &settings(), &network(), scan())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "CapacityUnavailable");
        assert!(err.to_string().contains("t3.small, t3a.small"), "{err}");
    }

    #[tokio::test]
    async fn any_other_launch_error_stops_at_once() {
        let [owned, existing] = checks();
        let denied = mock!(ec2::Client::run_instances).then_error(|| {
            RunInstancesError::generic(
                ErrorMetadata::builder()
                    .code("UnauthorizedOperation")
                    .build(),
            )
        });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&owned, &existing, &denied]
        );
        let err = run(&client, &settings(), &network(), scan())
            .await
            .unwrap_err();
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
