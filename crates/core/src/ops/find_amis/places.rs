//! Which accounts and Regions a run covers, and reaching each: the hub's
//! own credentials at home, a session of the member role elsewhere (one
//! per account for the warm environment).

#[allow(unused_imports)]
use super::*;

/// The session find-amis' member-role sessions are named (CloudTrail shows
/// it in the member account): one per account, kept while warm.
pub const SESSION: &str = "amiscan-find-amis";
/// Accounts reached (AssumeRole) and places listed at once.
pub(crate) const PLACE_CONCURRENCY: usize = 8;

/// The member accounts of a run: `MemberAccounts`, then the active
/// accounts under `MemberOrganizationalUnits` (listed now, so an account
/// that joins a unit is scanned at the next run), each once; and the units
/// that could not be listed, with why (their accounts are not scanned).
pub(crate) async fn members_of(
    client: &organizations::Client,
    settings: &FindSettings,
) -> (Vec<AccountId>, Vec<OuNotListed>) {
    let mut members = settings.member_accounts.clone();
    let mut failed = Vec::new();
    for ou in &settings.member_ous {
        match organizations::accounts_under(client, &ou.0).await {
            Ok(accounts) => {
                for account in accounts {
                    match account.parse::<AccountId>() {
                        Ok(id) if !members.contains(&id) => members.push(id),
                        Ok(_) => {}
                        Err(e) => {
                            warn!(ou = %ou.0, error = %e, "an account id Organizations listed is malformed")
                        }
                    }
                }
            }
            Err(err) => {
                warn!(ou = %ou.0, error = %err, "organizational unit not listed");
                failed.push(OuNotListed {
                    ou: ou.0.clone(),
                    reason: err.to_string(),
                });
            }
        }
    }
    (members, failed)
}

/// An organizational unit whose accounts could not be listed this run (the
/// hub reads its organization only from the management account or a
/// delegated administrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OuNotListed {
    pub ou: String,
    pub reason: String,
}

/// Every place a run covers: home first, then each member account in each
/// Region (`regions`, or home's when empty), home itself not twice.
pub fn places_of(members: &[AccountId], regions: &[RegionName], home: &Place) -> Vec<Place> {
    let regions = if regions.is_empty() {
        vec![home.region.clone()]
    } else {
        regions.to_vec()
    };
    let mut out = vec![home.clone()];
    for account in members {
        for region in &regions {
            let place = Place {
                account_id: account.clone(),
                region: region.clone(),
            };
            if !out.contains(&place) {
                out.push(place);
            }
        }
    }
    out
}

/// A listed account the hub could not act in: no member role there that
/// trusts find-amis (AssumeRole refused), so none of its AMIs is scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotOnboarded {
    pub account_id: AccountId,
    pub reason: String,
}

/// A place whose AMIs could not be listed this run (any other error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReached {
    pub account_id: AccountId,
    pub region: RegionName,
    pub reason: String,
}

/// The places reached, each with its EC2 client; the accounts not
/// onboarded; the places not reached.
pub(crate) struct Reach {
    pub clients: BTreeMap<Place, ec2::Client>,
    pub not_onboarded: Vec<NotOnboarded>,
    pub not_reached: Vec<NotReached>,
}

/// Whether an error is STS refusing the member role: no role of that name
/// in the account, or one that does not trust this function's role.
pub fn is_not_onboarded(err: &Error) -> bool {
    matches!(err, Error::Aws { operation: "AssumeRole", code, .. } if code == "AccessDenied")
}

/// Reaches every place, one AssumeRole per member account (the session
/// is then reused for its Regions).
pub(crate) async fn reach(places: &Places, targets: &[Place]) -> Reach {
    let mut by_account: BTreeMap<AccountId, Vec<Place>> = BTreeMap::new();
    for place in targets {
        by_account
            .entry(place.account_id.clone())
            .or_default()
            .push(place.clone());
    }
    let reached: Vec<_> = stream::iter(by_account)
        .map(|(account, places_here)| async move {
            let mut out = Vec::new();
            for place in places_here {
                let config = places.config(&place, SESSION).await;
                // Refused once, refused in every Region: the role is global.
                let refused = config.as_ref().is_err_and(is_not_onboarded);
                out.push((place, config));
                if refused {
                    break;
                }
            }
            (account, out)
        })
        .buffer_unordered(PLACE_CONCURRENCY)
        .collect()
        .await;
    let mut reach = Reach {
        clients: BTreeMap::new(),
        not_onboarded: Vec::new(),
        not_reached: Vec::new(),
    };
    for (account, results) in reached {
        if let Some(Err(err)) = results.first().map(|(_, r)| r).filter(|r| r.is_err()) {
            if is_not_onboarded(err) {
                warn!(account_id = %account, error = %err, "account not onboarded: no member role this function may assume");
                let role = places.role_arn(&account).unwrap_or_default();
                reach.not_onboarded.push(NotOnboarded {
                    account_id: account,
                    reason: format!(
                        "AssumeRole of {role} was refused: deploy member.yaml there (make deploy-members), or remove the account from MemberAccounts ({err})"
                    ),
                });
                continue;
            }
        }
        for (place, result) in results {
            match result {
                Ok(config) => {
                    reach.clients.insert(place, ec2::Client::new(&config));
                }
                Err(err) => {
                    warn!(place = %place, error = %err, "place not reached");
                    reach.not_reached.push(NotReached {
                        account_id: place.account_id,
                        region: place.region,
                        reason: err.to_string(),
                    });
                }
            }
        }
    }
    reach
        .not_onboarded
        .sort_by(|a, b| a.account_id.cmp(&b.account_id));
    reach
}

/// Whether scan instances can run at a place away from home (member.yaml's
/// scanner group there); asked only when the mode may launch and the place
/// has AMIs. A failed look is "no", with a warning: the AMIs still scan from
/// snapshots.
pub(crate) async fn scans_instances(
    ec2_client: &ec2::Client,
    settings: &FindSettings,
    has_images: bool,
    place: &Place,
    home: &Place,
) -> bool {
    if place == home || !settings.scan_mode.can_launch() || !has_images {
        return false;
    }
    match ec2::scanner_network(ec2_client).await {
        Ok(found) => found.is_some(),
        Err(err) => {
            warn!(place = %place, error = %err, "scanner subnet not looked up; no instance scans there");
            false
        }
    }
}

/// How a place is scanned: on an instance at home (the hub stack's subnet,
/// profile and security group) and where member.yaml gave the account and
/// Region a scanner subnet (`scans_instances`); elsewhere `auto` scans from
/// snapshots only and `instance` cannot scan.
pub fn mode_at(
    mode: ScanMode,
    place: &Place,
    home: &Place,
    scans_instances: bool,
) -> std::result::Result<ScanMode, String> {
    if place == home || mode == ScanMode::Snapshot || scans_instances {
        return Ok(mode);
    }
    match mode {
        ScanMode::Auto => Ok(ScanMode::Snapshot),
        _ => Err(place.no_subnet()),
    }
}

/// Why a new AMI's event is not scanned when it came from outside the
/// places this hub covers; `None` when it is covered.
pub(crate) fn uncovered(place: &Place, targets: &[Place]) -> Option<String> {
    if targets.contains(place) {
        return None;
    }
    if targets.iter().any(|t| t.account_id == place.account_id) {
        Some(format!("its Region {} is not in ScanRegions", place.region))
    } else {
        Some(format!(
            "its account {} is not in MemberAccounts",
            place.account_id
        ))
    }
}
