//! The hub acting in member accounts: find-amis lists every member account
//! in every Region through the member role (one session per account),
//! reports a listed account without that role as not onboarded, and each
//! scan's functions act in the AMI's own account and Region.

use amiscan_core::lambda::Handler;
use amiscan_core::settings::FromEnv;
use amiscan_tests::*;
use serde_json::{json, Value};

const MEMBER: &str = "111111111111";
const NOT_ONBOARDED: &str = "222222222222";

/// A role named as member.yaml's, in `cloud`'s account, that the hub's
/// account may assume, with these statements.
fn hub_assumable_role(cloud: &Cloud, statements: Value) {
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "sts:AssumeRole"}]});
    cloud.iam(
        "CreateRole",
        &[
            ("RoleName", "amiscan-member"),
            ("AssumeRolePolicyDocument", &trust.to_string()),
        ],
    );
    let policy = json!({"Version": "2012-10-17", "Statement": statements});
    cloud.iam(
        "PutRolePolicy",
        &[
            ("RoleName", "amiscan-member"),
            ("PolicyName", "scan"),
            ("PolicyDocument", &policy.to_string()),
        ],
    );
}

/// The member role as member.yaml makes it, reduced to what these tests
/// call: it reads images and tags the account's own under the prefix.
fn member_role(member: &Cloud, account: &str) {
    hub_assumable_role(
        member,
        json!([
            {"Effect": "Allow", "Action": ["ec2:DescribeImages", "ec2:DescribeInstances"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": "arn:aws:ec2:*::image/*",
             "Condition": {"StringEquals": {"ec2:Owner": account},
                           "ForAllValues:StringLike": {"aws:TagKeys": format!("{TAG_PREFIX}*")}}}]),
    );
}

#[tokio::test]
async fn one_run_finds_every_members_amis_in_every_region_names_the_account_not_onboarded_and_tags_in_the_owning_account(
) {
    // The one Region no other test's stack uses; the member's own Regions
    // are its own account's, which no other test touches.
    let (home_region, other_region) = ("ap-southeast-6", "eu-west-1");
    let stack = Stack::new(home_region).await;
    let member_home = account_cloud(MEMBER, home_region).await;
    let member_other = account_cloud(MEMBER, other_region).await;
    member_role(&member_home, MEMBER);
    let selected = [(SELECTION_KEY, SELECTION_VALUE)];
    let hub_ami = stack.cloud.register_ami("hub-golden", &selected).await;
    let near = member_home.register_ami("member-golden", &selected).await;
    let far = member_other
        .register_ami("member-golden-copy", &selected)
        .await;
    let untagged = member_other.register_ami("member-scratch", &[]).await;

    let members = format!("{MEMBER},{NOT_ONBOARDED}");
    let regions = format!("{home_region},{other_region}");
    let find = stack.find_amis_on(
        &stack.launch_machine,
        20,
        &[
            ("SCAN_MODE", "auto"),
            ("MEMBER_ACCOUNTS", &members),
            ("SCAN_REGIONS", &regions),
        ],
    );
    let out = find.handle(json!({})).await.unwrap();

    let started: Vec<(String, String, String)> = out
        .started
        .iter()
        .map(|s| {
            (
                s.ami_id.to_string(),
                s.place.account_id.to_string(),
                s.place.region.to_string(),
            )
        })
        .collect();
    let mut expected = vec![
        (
            hub_ami.clone(),
            ACCOUNT.to_string(),
            home_region.to_string(),
        ),
        (near.clone(), MEMBER.to_string(), home_region.to_string()),
        (far.clone(), MEMBER.to_string(), other_region.to_string()),
    ];
    expected.sort();
    assert_eq!(started, expected, "{out:?}");
    assert!(!out.started.iter().any(|s| s.ami_id == untagged.as_str()));
    assert_eq!(
        out.places.len(),
        3,
        "home and the member's two Regions: {:?}",
        out.places
    );
    assert_eq!(out.not_onboarded.len(), 1, "{out:?}");
    assert_eq!(out.not_onboarded[0].account_id.as_str(), NOT_ONBOARDED);
    assert!(out.not_onboarded[0].reason.contains("amiscan-member"));
    assert!(out.not_reached.is_empty(), "{:?}", out.not_reached);

    // Each execution's scan says where the AMI is; outside home, `auto`
    // is a snapshot scan (the scanner's subnet is the hub's).
    let executions = stack.cloud.executions(&stack.launch_machine).await;
    assert_eq!(executions.len(), 3);
    for started in &out.started {
        let arn = started.execution_arn.as_deref().unwrap();
        let input: Value = serde_json::from_str(
            stack
                .cloud
                .sfn()
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .unwrap()
                .input()
                .unwrap(),
        )
        .unwrap();
        let scan = &input["scan"];
        assert_eq!(scan["account_id"], started.place.account_id.as_str());
        assert_eq!(scan["region"], started.place.region.as_str());
        let mode = if started.ami_id == hub_ami.as_str() {
            "auto"
        } else {
            "snapshot"
        };
        assert_eq!(scan["scan_mode"], mode, "{scan}");
        if mode == "snapshot" {
            assert_eq!(
                scan["no_instance_scan"],
                format!("no subnet for instance scans in {}", started.place),
                "{scan}"
            );
        } else {
            assert!(scan.get("no_instance_scan").is_none(), "{scan}");
        }
    }

    // The alert warns of the account not onboarded.
    let messages = stack.notifications();
    let (subject, body, _) = message_of(&messages[0]);
    assert_eq!(
        messages[0]["MessageAttributes"]["severity"]["Value"], "WARNING",
        "{subject}: {body}"
    );
    assert_eq!(body["not_onboarded"][0]["account_id"], NOT_ONBOARDED);
    assert_eq!(body["places"].as_array().unwrap().len(), 3);

    // One session per member account for the warm environment: a second
    // run assumes nothing new in the member (the refused account is asked
    // again, so an account onboarded since is picked up).
    assert_eq!(
        find.assumptions(),
        2,
        "the member once, the refused account once"
    );
    let again = find.handle(json!({})).await.unwrap();
    assert_eq!(again.already_running.len(), 3, "{again:?}");
    assert_eq!(find.assumptions(), 3, "the member's session was reused");

    // A scan's functions act in the AMI's account and Region: tag-ami
    // writes the status on the member's AMI, in the member's account.
    let ami = far;
    let member = member_other;
    let scan = json!({
        "scan_id": format!("{ami}-20261206"), "ami_id": ami, "scan_mode": "snapshot",
        "account_id": MEMBER, "region": other_region,
    });
    let tagged = stack
        .tag_ami()
        .handle(json!({"scan": scan, "status": "IN_PROGRESS"}))
        .await
        .unwrap();
    // Its alert names the member's account and Region, for people and for
    // SNS filter policies.
    let alert = serde_json::to_value(&tagged.alert).unwrap();
    assert_eq!(
        alert["subject"],
        format!("amiscan [{MEMBER}/{other_region}]: scanning {ami}"),
        "{alert}"
    );
    assert_eq!(alert["attributes"]["account_id"]["StringValue"], MEMBER);
    assert_eq!(alert["attributes"]["region"]["StringValue"], other_region);
    let tags = member.image_tags(&ami).await;
    assert_eq!(
        tags.get("amiscan:status").map(String::as_str),
        Some("IN_PROGRESS"),
        "{tags:?}"
    );

    // An account with no member role: AssumeRole's refusal, typed, and
    // nothing written.
    let mut elsewhere = scan.clone();
    elsewhere["account_id"] = json!(NOT_ONBOARDED);
    let err = stack
        .tag_ami()
        .handle(json!({"scan": elsewhere, "status": "IN_PROGRESS"}))
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), Some("AccessDenied"), "{err}");
    assert!(err.to_string().starts_with("AssumeRole failed"), "{err}");

    // A malformed account is refused at the edge, naming the field.
    let mut malformed = scan.clone();
    malformed["account_id"] = json!("1234");
    let err = stack
        .tag_ami()
        .handle(json!({"scan": malformed, "status": "IN_PROGRESS"}))
        .await
        .unwrap_err();
    assert_eq!(error_type(err.clone()), "InvalidInput");
    assert!(err.to_string().contains("scan.account_id"), "{err}");

    // The hub's own account in another Region is reached through its member
    // role too (the functions' own roles name their home Region only): with
    // a role there that may only read, tag-ami's write is refused, where the
    // functions' own credentials would have written.
    hub_assumable_role(
        &stack.cloud,
        json!([{"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}]),
    );
    let hub_away = cloud(other_region).await;
    let own = hub_away.register_ami("hub-golden-copy", &[]).await;
    let own_scan = json!({
        "scan_id": format!("{own}-20261206"), "ami_id": own, "scan_mode": "snapshot",
        "account_id": ACCOUNT, "region": other_region,
    });
    let err = stack
        .tag_ami()
        .handle(json!({"scan": own_scan, "status": "IN_PROGRESS"}))
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), Some("UnauthorizedOperation"), "{err}");
    assert!(!hub_away
        .image_tags(&own)
        .await
        .contains_key("amiscan:status"));

    // The hourly sweep reaches members through the hub's bus: each scan rule
    // there names its instance's account and Region. A member instance past
    // the deadline is terminated there and its rules go from both buses;
    // the rules of an instance already gone go at once.
    let hub_bus = "amiscan-hub";
    let own_events = stack.cloud.events();
    own_events
        .create_event_bus()
        .name(hub_bus)
        .send()
        .await
        .unwrap();
    member_home.iam(
        "PutRolePolicy",
        &[
            ("RoleName", "amiscan-member"),
            ("PolicyName", "sweep"),
            (
                "PolicyDocument",
                &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": ["ec2:TerminateInstances", "events:RemoveTargets", "events:DeleteRule"],
                    "Resource": "*"}]})
                .to_string(),
            ),
        ],
    );
    let profile = format!("amiscan-scanner-{home_region}");
    member_home.iam(
        "CreateInstanceProfile",
        &[("InstanceProfileName", &profile)],
    );
    let base = member_home.register_ami("member-base", &[]).await;
    let launch = |scan: &'static str| {
        let (ec2, base, profile) = (member_home.ec2(), base.clone(), profile.clone());
        async move {
            let tags = [
                ("amiscan:managed", "true"),
                ("amiscan:ami-id", base.as_str()),
                ("amiscan:scan-id", scan),
            ]
            .map(|(k, v)| {
                amiscan_core::aws::ec2::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
            });
            let out = ec2
                .run_instances()
                .image_id(&base)
                .min_count(1)
                .max_count(1)
                .iam_instance_profile(
                    amiscan_core::aws::ec2::types::IamInstanceProfileSpecification::builder()
                        .arn(format!("arn:aws:iam::{MEMBER}:instance-profile/{profile}"))
                        .build(),
                )
                .tag_specifications(
                    amiscan_core::aws::ec2::types::TagSpecification::builder()
                        .resource_type(amiscan_core::aws::ec2::types::ResourceType::Instance)
                        .set_tags(Some(tags.to_vec()))
                        .build(),
                )
                .send()
                .await
                .unwrap();
            out.instances()[0].instance_id().unwrap().to_string()
        }
    };
    let (live, gone) = (launch("live").await, launch("gone").await);
    member_home
        .ec2()
        .terminate_instances()
        .instance_ids(&gone)
        .send()
        .await
        .unwrap();
    let member_events = member_home.events();
    let pattern = |instance: &str| {
        json!({"source": ["aws.inspector2"], "account": [MEMBER], "region": [home_region],
               "detail": {"instance-id": [instance]}})
        .to_string()
    };
    for instance in [&live, &gone] {
        let name = format!("amiscan-scan-{instance}");
        for (client, bus) in [(&own_events, Some(hub_bus)), (&member_events, None)] {
            client
                .put_rule()
                .set_event_bus_name(bus.map(str::to_string))
                .name(&name)
                .event_pattern(pattern(instance))
                .send()
                .await
                .unwrap();
        }
    }
    // A scanner-named rule on the hub's bus that names no place: left alone.
    own_events
        .put_rule()
        .event_bus_name(hub_bus)
        .name("amiscan-scan-i-0123456789abcdef0")
        .event_pattern(r#"{"source":["aws.inspector2"]}"#)
        .send()
        .await
        .unwrap();
    let settings = amiscan_core::ops::cleanup::CleanupSettings::from_env(env(&[
        ("INSTANCE_PROFILE", "amiscan-scanner"),
        ("SCAN_TIMEOUT_MINUTES", "120"),
        ("HUB_EVENT_BUS_NAME", hub_bus),
    ]))
    .unwrap();
    let places = amiscan_core::aws::places::Places::new(
        &stack.cloud.config,
        &amiscan_core::settings::Home::for_tests(),
    );
    let rules_on = |client: &amiscan_core::aws::events::Client, bus: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut names: Vec<String> = client
                .list_rules()
                .set_event_bus_name(bus.map(str::to_string))
                .name_prefix("amiscan-scan-")
                .send()
                .await
                .unwrap()
                .rules()
                .iter()
                .filter_map(|r| r.name().map(str::to_string))
                .collect();
            names.sort();
            names
        }
    };
    let sweep = |at| {
        let (own_events, places, settings) = (&own_events, &places, &settings);
        async move {
            let mut report = amiscan_core::ops::cleanup::CleanupReport::default();
            amiscan_core::ops::cleanup::sweep_members(
                own_events,
                places,
                settings,
                at,
                &mut report,
            )
            .await
            .unwrap();
            report
        }
    };
    let now = sweep(chrono::Utc::now()).await;
    assert!(now.terminated.is_empty(), "{now:?}");
    let gone_rule = format!("amiscan-scan-{gone}");
    assert_eq!(now.rules_deleted, [gone_rule.clone(), gone_rule]);
    assert_eq!(member_home.instance_state(&live).await, "running");
    let later = sweep(chrono::Utc::now() + chrono::Duration::minutes(120 + 30 + 1)).await;
    assert_eq!(later.terminated, [live.as_str()]);
    assert_eq!(member_home.instance_state(&live).await, "terminated");
    assert_eq!(
        rules_on(&own_events, Some(hub_bus)).await,
        ["amiscan-scan-i-0123456789abcdef0"]
    );
    assert!(rules_on(&member_events, None).await.is_empty());
}
