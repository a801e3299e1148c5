//! The parties and places every order vocabulary shares: the canonical model's and the saga's.

use serde::{Deserialize, Serialize};

/// Currencies orders may be placed in.
pub const CURRENCIES: &[&str] = &[
    "EUR", "USD", "GBP", "CHF", "SEK", "DKK", "NOK", "PLN", "CZK",
];

/// The customer on an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer's id in the CRM.
    pub id: String,
    /// Where the customer is told about the order.
    pub email: String,
    /// The customer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A shipping address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Street and number.
    pub line1: String,
    /// The rest of the street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City or town, as the source sent it (not normalised).
    pub city: String,
    /// Postal code, as the source sent it: not checked against `country`.
    pub postal_code: String,
    /// ISO 3166 alpha-2 country code.
    pub country: String,
}
