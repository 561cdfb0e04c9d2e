//! Organizations: the accounts under organizational units, their child
//! units' included (the hub reading its organization, from the management
//! account or a delegated administrator).

pub use aws_sdk_organizations::{config, error, operation, types, Client};

use types::{AccountState, AccountStatus};

use crate::error::{Error, Result};

/// The active accounts under `ou` at any depth, in the order listed.
pub async fn accounts_under(client: &Client, ou: &str) -> Result<Vec<String>> {
    let mut accounts = Vec::new();
    let mut units = vec![ou.to_string()];
    while let Some(parent) = units.pop() {
        let mut pages = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("ListAccountsForParent", e))?;
            for account in page.accounts() {
                // `State` replaces the older `Status`; either says ACTIVE.
                let active = match account.state() {
                    Some(state) => *state == AccountState::Active,
                    None => account.status() == Some(&AccountStatus::Active),
                };
                if let (true, Some(id)) = (active, account.id()) {
                    accounts.push(id.to_string());
                }
            }
        }
        let mut pages = client
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("ListOrganizationalUnitsForParent", e))?;
            units.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|u| u.id().map(str::to_string)),
            );
        }
    }
    Ok(accounts)
}
