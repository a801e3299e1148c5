//! Customer dialects: the CRM's and the help desk's.

use busline::canonical::CanonicalError;
use busline::canonical::customer::{CustomerChanges, CustomerSource, CustomerUpdated};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::HELPDESK_USER_UPDATED;

/// The CRM's change (`infra/schemas/webhooks/crm-customer.v1.json`): already in canonical field
/// names, so the mapping is the identity plus the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmCustomerUpdated {
    /// The CRM's customer id, which every system keeps: the canonical `customer_id` as it is.
    pub customer_id: String,
    /// When it changed in the CRM.
    #[serde(with = "busline::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// The fields that changed (the CRM sends nothing else).
    pub changes: CustomerChanges,
}

/// CRM → canonical.
pub fn from_crm(change: CrmCustomerUpdated) -> CustomerUpdated {
    CustomerUpdated {
        customer_id: change.customer_id,
        source: CustomerSource::Crm,
        updated_at: change.updated_at,
        changes: change.changes,
    }
}

/// Canonical → CRM (the reverse of [`from_crm`]).
pub fn to_crm(change: &CustomerUpdated) -> CrmCustomerUpdated {
    CrmCustomerUpdated {
        customer_id: change.customer_id.clone(),
        updated_at: change.updated_at,
        changes: change.changes.clone(),
    }
}

/// The help desk's webhook (`infra/schemas/webhooks/helpdesk-user.v1.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpdeskUserEvent {
    /// `user.created` or `user.updated`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the webhook fired.
    #[serde(with = "busline::time::rfc3339")]
    pub time: DateTime<Utc>,
    /// The user as it now is.
    pub detail: HelpdeskUser,
}

/// A help-desk user: the whole record, `null` where it has no value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpdeskUser {
    /// The help desk's own id.
    pub id: i64,
    /// The CRM customer id, when the user is linked to a customer.
    pub external_id: Option<String>,
    /// Email; blank or `null` changes nothing.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number; blank or `null` changes nothing.
    #[serde(default)]
    pub phone: Option<String>,
    /// Name; blank or `null` changes nothing.
    #[serde(default)]
    pub name: Option<String>,
    /// When the user record changed; the webhook's time when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "busline::time::rfc3339_option"
    )]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Help desk → canonical. The help desk sends the whole user; the change is every field it has a
/// value for (a `null` does not erase what the master knows from elsewhere). A user not linked to a
/// customer cannot be merged into the master: that is a permanent failure naming the user, for
/// someone to link it.
pub fn from_helpdesk(event: HelpdeskUserEvent) -> Result<CustomerUpdated, CanonicalError> {
    let user = event.detail;
    let invalid = |problem: String| CanonicalError::Invalid {
        event_type: HELPDESK_USER_UPDATED.to_owned(),
        problems: vec![problem],
    };
    if !matches!(event.event_type.as_str(), "user.created" | "user.updated") {
        return Err(invalid(format!(
            "type {:?} is not a user change",
            event.event_type
        )));
    }
    let customer_id = user
        .external_id
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "help-desk user {} has no external_id: it is not linked to a customer",
                user.id
            ))
        })?;
    let present = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    Ok(CustomerUpdated {
        customer_id,
        source: CustomerSource::Helpdesk,
        updated_at: user.updated_at.unwrap_or(event.time),
        changes: CustomerChanges {
            email: present(user.email),
            phone: present(user.phone),
            name: present(user.name),
            tier: None,
        },
    })
}
