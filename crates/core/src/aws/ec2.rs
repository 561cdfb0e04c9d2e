//! EC2: images, the scanner's instances, tags.

pub use aws_sdk_ec2::{config, error, operation, types, Client};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::model::{time, AmiId, InstanceId, ScanId};
use crate::tags;
use types::{
    BlockDeviceMapping, Filter, HttpTokensState, IamInstanceProfileSpecification, Image, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceType, ResourceType, ShutdownBehavior, Tag,
    TagSpecification,
};

/// EC2 accepts at most 200 values in one filter.
pub const FILTER_VALUES_MAX: usize = 200;

/// Instance states in which a scan instance still costs money.
pub const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

pub fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    values
        .into_iter()
        .fold(Filter::builder().name(name), |b, v| b.values(v))
        .build()
}

/// A tag's value from a resource's tags.
pub fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Which images DescribeImages lists.
pub enum Images<'a> {
    /// The account's own images carrying a tag.
    OwnedTagged { key: &'a str, value: &'a str },
    /// The named images (at most [`FILTER_VALUES_MAX`]), the account's own
    /// only or every visible one. A filter, unlike ImageIds, does not fail
    /// the whole call on one missing id.
    Named { ids: &'a [AmiId], owned_only: bool },
}

/// DescribeImages, every page.
pub async fn describe_images(client: &Client, which: Images<'_>) -> Result<Vec<Image>> {
    let (filter, owned_only) = match which {
        Images::OwnedTagged { key, value } => (filter(&format!("tag:{key}"), [value]), true),
        Images::Named { ids, owned_only } => (
            filter("image-id", ids.iter().map(AmiId::as_str)),
            owned_only,
        ),
    };
    let mut request = client.describe_images().filters(filter);
    if owned_only {
        request = request.owners("self");
    }
    request
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from_sdk("DescribeImages", e))
}

/// One of this account's images, or `None` when it has no such image.
pub async fn own_image(client: &Client, ami_id: &AmiId) -> Result<Option<Image>> {
    let images = describe_images(
        client,
        Images::Named {
            ids: std::slice::from_ref(ami_id),
            owned_only: true,
        },
    )
    .await?;
    Ok(images.into_iter().next())
}

/// Named AMIs sorted by what EC2 says of them.
#[derive(Debug, Default)]
pub struct Lookup {
    /// This account's images.
    pub owned: Vec<Image>,
    /// Visible, but another account's.
    pub foreign: Vec<AmiId>,
    /// Not visible at all.
    pub missing: Vec<AmiId>,
}

/// Looks named AMIs up: one DescribeImages of the account's own per 200
/// ids, and a second only for the ids that it did not return, to tell a
/// foreign image from a missing one.
pub async fn lookup_images(client: &Client, ids: &[AmiId]) -> Result<Lookup> {
    let mut lookup = Lookup::default();
    for chunk in ids.chunks(FILTER_VALUES_MAX) {
        let owned = describe_images(
            client,
            Images::Named {
                ids: chunk,
                owned_only: true,
            },
        )
        .await?;
        let unowned: Vec<AmiId> = chunk
            .iter()
            .filter(|id| !owned.iter().any(|i| i.image_id() == Some(id.as_str())))
            .cloned()
            .collect();
        lookup.owned.extend(owned);
        if unowned.is_empty() {
            continue;
        }
        let visible = describe_images(
            client,
            Images::Named {
                ids: &unowned,
                owned_only: false,
            },
        )
        .await?;
        for id in unowned {
            if visible.iter().any(|i| i.image_id() == Some(id.as_str())) {
                lookup.foreign.push(id);
            } else {
                lookup.missing.push(id);
            }
        }
    }
    Ok(lookup)
}

/// Where scan instances run in a member account's Region: member.yaml's
/// scanner security group, tagged `amiscan:managed=true`, names its subnet in
/// `amiscan:scanner-subnet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerNetwork {
    pub subnet_id: String,
    pub security_group_id: String,
}

/// The scanner's network here, if member.yaml made one (the lowest group id
/// when there are several, so every caller picks the same).
pub async fn scanner_network(client: &Client) -> Result<Option<ScannerNetwork>> {
    let groups: Vec<_> = client
        .describe_security_groups()
        .filters(filter(
            &format!("tag:{}", tags::MANAGED_TAG),
            [tags::MANAGED_VALUE],
        ))
        .filters(filter("tag-key", [tags::SCANNER_SUBNET_TAG]))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from_sdk("DescribeSecurityGroups", e))?;
    Ok(groups
        .iter()
        .filter_map(|g| {
            Some(ScannerNetwork {
                subnet_id: tag(g.tags(), tags::SCANNER_SUBNET_TAG)?.to_string(),
                security_group_id: g.group_id()?.to_string(),
            })
        })
        .filter(|n| n.subnet_id.starts_with("subnet-"))
        .min_by(|a, b| a.security_group_id.cmp(&b.security_group_id)))
}

/// An instance as amiscan reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerInstance {
    pub instance_id: InstanceId,
    /// Carries `amiscan:managed=true`.
    pub managed: bool,
    pub ami_id: Option<String>,
    pub scan_id: Option<String>,
    pub state: String,
    pub instance_type: Option<String>,
    pub launch_time: Option<DateTime<Utc>>,
    /// The ARN of the instance profile it runs with.
    pub profile_arn: Option<String>,
    /// The AMI it was launched from.
    pub image_id: Option<String>,
}

impl ScannerInstance {
    fn of(instance: &Instance) -> Option<ScannerInstance> {
        let tags = instance.tags();
        Some(ScannerInstance {
            instance_id: instance.instance_id()?.parse().ok()?,
            managed: tag(tags, tags::MANAGED_TAG) == Some(tags::MANAGED_VALUE),
            ami_id: tag(tags, tags::AMI_ID_TAG).map(str::to_string),
            scan_id: tag(tags, tags::SCAN_ID_TAG).map(str::to_string),
            state: instance
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            instance_type: instance.instance_type().map(|t| t.as_str().to_string()),
            launch_time: instance.launch_time().and_then(time::from_sdk),
            profile_arn: instance
                .iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_string),
            image_id: instance.image_id().map(str::to_string),
        })
    }

    /// Not terminated or terminating.
    pub fn is_live(&self) -> bool {
        LIVE_STATES.contains(&self.state.as_str())
    }
}

/// Which instances to read.
pub enum Instances<'a> {
    /// Scanner-managed instances, of one scan or of all, live only or any
    /// state.
    Scanners {
        scan_id: Option<&'a ScanId>,
        live_only: bool,
    },
    /// One instance by id, whoever owns it (to refuse it when it is not
    /// amiscan's). Filtering by `instance-id` leaves a missing id out
    /// instead of failing the call.
    ById(&'a InstanceId),
}

/// DescribeInstances, every page.
pub async fn describe_instances(
    client: &Client,
    which: Instances<'_>,
) -> Result<Vec<ScannerInstance>> {
    let filters = match which {
        Instances::Scanners { scan_id, live_only } => {
            let mut filters = vec![filter(
                &format!("tag:{}", tags::MANAGED_TAG),
                [tags::MANAGED_VALUE],
            )];
            if let Some(id) = scan_id {
                filters.push(filter(&format!("tag:{}", tags::SCAN_ID_TAG), [id.as_str()]));
            }
            if live_only {
                filters.push(filter("instance-state-name", LIVE_STATES));
            }
            filters
        }
        Instances::ById(id) => vec![filter("instance-id", [id.as_str()])],
    };
    let reservations: Vec<_> = client
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from_sdk("DescribeInstances", e))?;
    Ok(reservations
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(ScannerInstance::of)
        .collect())
}

/// The instance profile the scan instance runs with.
pub enum Profile<'a> {
    Name(&'a str),
    Arn(&'a str),
}

/// One RunInstances request: everything but the fixed lock-down, which
/// [`run_instance`] applies to every launch.
pub struct Launch<'a> {
    pub ami_id: &'a AmiId,
    pub instance_type: &'a str,
    pub client_token: String,
    pub subnet_id: &'a str,
    pub security_group_id: &'a str,
    pub profile: Profile<'a>,
    pub block_devices: Vec<BlockDeviceMapping>,
    /// On the instance and its volumes.
    pub tags: Vec<(String, String)>,
}

/// Launches one instance: IMDSv2 only, no public IP, terminated (not
/// stopped) on shutdown, its interface deleted with it.
pub async fn run_instance(client: &Client, launch: Launch<'_>) -> Result<ScannerInstance> {
    let tags: Vec<Tag> = launch
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let tag_spec = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags.clone()))
            .build()
    };
    let profile = match launch.profile {
        Profile::Arn(arn) => IamInstanceProfileSpecification::builder().arn(arn),
        Profile::Name(name) => IamInstanceProfileSpecification::builder().name(name),
    }
    .build();
    let out = client
        .run_instances()
        .image_id(launch.ami_id.as_str())
        .instance_type(InstanceType::from(launch.instance_type))
        .min_count(1)
        .max_count(1)
        .client_token(launch.client_token)
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(launch.subnet_id)
                .groups(launch.security_group_id)
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
        .set_block_device_mappings(Some(launch.block_devices))
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
        .send()
        .await
        .map_err(|e| Error::from_sdk("RunInstances", e))?;
    out.instances()
        .first()
        .and_then(ScannerInstance::of)
        .ok_or_else(|| Error::Internal("RunInstances returned no instance".into()))
}

/// How a launched instance came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    Running,
    /// Still pending when the wait ended.
    Pending,
    /// It went to `state` at once, for EC2's `reason` (such as
    /// `Client.InvalidKMSKey.InvalidState` for snapshots it cannot decrypt).
    Stopped {
        state: String,
        reason: String,
    },
}

/// EC2's InstanceRunning waiter, for at most `max_wait`.
pub async fn wait_until_running(
    client: &Client,
    id: &InstanceId,
    max_wait: std::time::Duration,
) -> Result<Boot> {
    use aws_sdk_ec2::client::Waiters;
    use aws_smithy_runtime_api::client::waiters::error::WaiterError;
    match client
        .wait_until_instance_running()
        .instance_ids(id.as_str())
        .wait(max_wait)
        .await
    {
        Ok(_) => Ok(Boot::Running),
        Err(WaiterError::ExceededMaxWait(_)) => Ok(Boot::Pending),
        Err(WaiterError::FailureState(failure)) => {
            let output = failure.final_poll().as_result().ok();
            let instance =
                output.and_then(|o| o.reservations().iter().flat_map(|r| r.instances()).next());
            let state = instance
                .and_then(|i| i.state())
                .and_then(|s| s.name())
                .map_or("stopped", |n| n.as_str())
                .to_string();
            let reason = instance
                .and_then(|i| i.state_reason())
                .map(|r| match (r.code(), r.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (code, message) => code.or(message).unwrap_or_default().to_string(),
                })
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "EC2 gave no reason".into());
            Ok(Boot::Stopped { state, reason })
        }
        Err(WaiterError::OperationFailed(failed)) => {
            Err(Error::from_sdk("DescribeInstances", failed.into_error()))
        }
        Err(other) => Err(Error::Internal(format!("waiting for {id} to run: {other}"))),
    }
}

pub async fn terminate_instances(client: &Client, ids: &[InstanceId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .terminate_instances()
        .set_instance_ids(Some(ids.iter().map(|i| i.to_string()).collect()))
        .send()
        .await
        .map_err(|e| Error::from_sdk("TerminateInstances", e))?;
    Ok(())
}

/// Sets tags on a resource (EC2 answers `InvalidAMIID.NotFound` for an AMI
/// that does not exist).
pub async fn create_tags(
    client: &Client,
    resource: &str,
    set: &BTreeMap<String, String>,
) -> Result<()> {
    client
        .create_tags()
        .resources(resource)
        .set_tags(Some(
            set.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| Error::from_sdk("CreateTags", e))?;
    Ok(())
}

/// Removes tag keys, whatever their value; an absent key is not an error.
pub async fn delete_tags(client: &Client, resource: &str, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    client
        .delete_tags()
        .resources(resource)
        .set_tags(Some(
            keys.iter().map(|k| Tag::builder().key(k).build()).collect(),
        ))
        .send()
        .await
        .map_err(|e| Error::from_sdk("DeleteTags", e))?;
    Ok(())
}

pub async fn enable_image_deprecation(
    client: &Client,
    ami_id: &AmiId,
    at: DateTime<Utc>,
) -> Result<()> {
    client
        .enable_image_deprecation()
        .image_id(ami_id.as_str())
        .deprecate_at(time::to_sdk(at))
        .send()
        .await
        .map_err(|e| Error::from_sdk("EnableImageDeprecation", e))?;
    Ok(())
}

pub async fn disable_image(client: &Client, ami_id: &AmiId) -> Result<()> {
    client
        .disable_image()
        .image_id(ami_id.as_str())
        .send()
        .await
        .map_err(|e| Error::from_sdk("DisableImage", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use operation::describe_images::DescribeImagesOutput;

    fn image(id: &str) -> Image {
        Image::builder()
            .image_id(id)
            .state(types::ImageState::Available)
            .build()
    }

    #[tokio::test]
    async fn listing_images_follows_every_page() {
        let page1 = mock!(Client::describe_images)
            .match_requests(|r| r.next_token().is_none() && r.owners() == ["self"])
            .then_output(|| {
                DescribeImagesOutput::builder()
                    .images(image("ami-00000001"))
                    .images(image("ami-00000002"))
                    .next_token("page-2")
                    .build()
            });
        let page2 = mock!(Client::describe_images)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                DescribeImagesOutput::builder()
                    .images(image("ami-00000003"))
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&page1, &page2]);
        let images = describe_images(
            &client,
            Images::OwnedTagged {
                key: "InspectorScan",
                value: "true",
            },
        )
        .await
        .unwrap();
        let ids: Vec<_> = images.iter().filter_map(|i| i.image_id()).collect();
        assert_eq!(ids, ["ami-00000001", "ami-00000002", "ami-00000003"]);
        assert_eq!((page1.num_calls(), page2.num_calls()), (1, 1));
    }
}
