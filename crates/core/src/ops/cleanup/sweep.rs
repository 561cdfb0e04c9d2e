//! The sweep: what a lost execution left behind, at home and in the member
//! places that the hub's bus names.

use super::*;

/// Whether a scanner instance has outlived any scan's deadline.
pub fn is_orphaned(
    instance: &ScannerInstance,
    now: DateTime<Utc>,
    settings: &CleanupSettings,
) -> bool {
    let limit = Duration::minutes(i64::from(
        settings.scan_timeout_minutes + settings.sweep_margin_minutes,
    ));
    instance.launch_time.is_some_and(|t| now - t > limit)
}

/// Where a hub-bus rule's instance runs: the `account` and `region` its
/// pattern names (create-scan-rule writes both for a scan away from home).
pub fn place_of_pattern(pattern: Option<&str>) -> Option<Place> {
    let value: Value = serde_json::from_str(pattern?).ok()?;
    Some(Place {
        account_id: value["account"][0].as_str()?.parse().ok()?,
        region: value["region"][0].as_str()?.parse().ok()?,
    })
}

/// One place's sweep: terminate its scanner instances (those running with
/// `profile`) past the deadline plus the margin, and delete the scanner
/// rules named whose instance is no longer live, there and, for a member's
/// scans, on the hub's bus.
#[allow(clippy::too_many_arguments)]
async fn sweep_place(
    ec2_client: &ec2::Client,
    events_client: &events::Client,
    hub: Option<HubRules<'_>>,
    profile: &InstanceProfile,
    rule_names: Vec<String>,
    settings: &CleanupSettings,
    now: DateTime<Utc>,
    report: &mut CleanupReport,
) -> Result<()> {
    let instances = ec2::describe_instances(
        ec2_client,
        Instances::Scanners {
            scan_id: None,
            live_only: true,
        },
    )
    .await?;
    let (orphans, running): (Vec<_>, Vec<_>) = instances.into_iter().partition(|i| {
        let why = not_a_scanner(i, profile);
        if let Some(why) = &why {
            warn!(instance_id = %i.instance_id, why = %why, "tagged as a scanner but is not one; left alone");
        }
        why.is_none() && is_orphaned(i, now, settings)
    });
    for orphan in &orphans {
        warn!(instance_id = %orphan.instance_id, scan_id = orphan.scan_id.as_deref().unwrap_or_default(), "terminating an orphaned scan instance");
    }
    let orphan_ids: Vec<InstanceId> = orphans.into_iter().map(|i| i.instance_id).collect();
    ec2::terminate_instances(ec2_client, &orphan_ids).await?;
    report.terminated.extend(orphan_ids);

    let still_live: BTreeSet<InstanceId> = running.into_iter().map(|i| i.instance_id).collect();
    let mut stale = BTreeSet::new();
    for name in rule_names {
        let rule = name.parse::<RuleName>().ok();
        match rule.as_ref().and_then(|r| r.instance().map(|i| (r, i))) {
            Some((_, id)) if still_live.contains(&id) => {}
            Some((rule, _)) => {
                stale.insert(rule.clone());
            }
            None => {
                warn!(rule_name = %name, "rule has the scanner prefix but no instance id; left alone")
            }
        }
    }
    if let Some(hub) = hub {
        delete_rules(hub.client, Some(&hub.bus.0), stale.clone(), report).await?;
    }
    delete_rules(events_client, None, stale, report).await
}

/// Sweep at home: terminate scanner instances past the deadline plus the
/// margin, and delete scanner rules whose instance is no longer live.
pub async fn sweep(
    ec2_client: &ec2::Client,
    events_client: &events::Client,
    settings: &CleanupSettings,
    now: DateTime<Utc>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let names = events::rules(events_client, None, RULE_NAME_PREFIX)
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    sweep_place(
        ec2_client,
        events_client,
        None,
        &settings.instance_profile,
        names,
        settings,
        now,
        &mut report,
    )
    .await?;
    report.rules_already_gone.clear();
    info!(
        terminated = report.terminated.len(),
        rules_deleted = report.rules_deleted.len(),
        "sweep done"
    );
    Ok(report)
}

/// Sweep of member accounts: each scan rule on the hub's bus names the
/// account and Region of its instance; each such place is swept as home is
/// (member.yaml's scanner profile there), through the member role, its
/// rules deleted on both buses once their instance is gone. A place that
/// cannot be swept is logged and the others still are; the first such
/// error is returned at the end, so the sweep is retried.
pub async fn sweep_members(
    own: &events::Client,
    places: &Places,
    settings: &CleanupSettings,
    now: DateTime<Utc>,
    report: &mut CleanupReport,
) -> Result<()> {
    let Some(bus) = settings.hub_bus.as_ref() else {
        return Ok(());
    };
    let mut by_place: BTreeMap<Place, Vec<String>> = BTreeMap::new();
    for rule in events::rules(own, Some(&bus.0), RULE_NAME_PREFIX).await? {
        match place_of_pattern(rule.event_pattern.as_deref()) {
            Some(place) => by_place.entry(place).or_default().push(rule.name),
            None => {
                warn!(rule_name = %rule.name, "a scanner rule on the hub's bus names no account and Region; left alone")
            }
        }
    }
    let mut first_error = None;
    let gone_before = report.rules_already_gone.len();
    for (place, names) in by_place {
        let swept = async {
            let config = places.config(&place, "amiscan-sweep").await?;
            sweep_place(
                &ec2::Client::new(&config),
                &events::Client::new(&config),
                Some(HubRules { client: own, bus }),
                &InstanceProfile::of_member(&place),
                names,
                settings,
                now,
                report,
            )
            .await
        }
        .await;
        if let Err(err) = swept {
            warn!(place = %place, error = %err, "member place not swept");
            first_error.get_or_insert(err);
        }
    }
    report.rules_already_gone.truncate(gone_before);
    first_error.map_or(Ok(()), Err)
}
