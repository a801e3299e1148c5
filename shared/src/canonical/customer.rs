//! The canonical customer change, which the customer master merges.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CUSTOMER_UPDATED_V1, CanonicalError, Problems};

/// The systems that send customer changes in a dialect of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerSource {
    /// The CRM: owns tiers and phone numbers.
    Crm,
    /// The help desk: customers and agents edit contact details there.
    Helpdesk,
}

impl CustomerSource {
    /// The name the customer master's conflict rules use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crm => "crm",
            Self::Helpdesk => "helpdesk",
        }
    }
}

/// A customer tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// `standard` on the wire: the lowest tier.
    Standard,
    /// `silver` on the wire: above standard, below gold.
    Silver,
    /// `gold` on the wire: the highest tier.
    Gold,
}

/// The fields a change sets; a field left out is not changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerChanges {
    /// Email address, at least 3 characters once trimmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number, as the source wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Full name, not blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tier; under the built-in survivorship rules the CRM's value beats any other source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

impl CustomerChanges {
    /// Whether the change sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `io.busline.customer.updated.v1` (`infra/schemas/canonical/customer.updated.v1.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpdated {
    /// The customer's id (the CRM's, which every system keeps).
    pub customer_id: String,
    /// Which system changed it.
    pub source: CustomerSource,
    /// When the source changed it: the customer master orders changes by this.
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// The fields it sets, at least one; a field left out keeps its value.
    pub changes: CustomerChanges,
}

impl CustomerUpdated {
    /// Checks what serde cannot: an id, at least one change, no empty values.
    pub fn validate(&self) -> Result<(), CanonicalError> {
        let mut p = Problems::default();
        p.non_empty("the customer id", &self.customer_id);
        p.check(!self.changes.is_empty(), || "nothing changed".to_owned());
        let c = &self.changes;
        if let Some(email) = &c.email {
            p.check(email.trim().chars().count() >= 3, || {
                format!("email {email:?} is too short")
            });
        }
        for (what, value) in [("phone", &c.phone), ("name", &c.name)] {
            if let Some(value) = value {
                p.non_empty(what, value);
            }
        }
        p.finish(CUSTOMER_UPDATED_V1)
    }
}
