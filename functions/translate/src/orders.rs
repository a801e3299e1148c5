//! Order dialects: the web shop's and the marketplace's.

use busline::canonical::CanonicalError;
use busline::canonical::order::{Channel, Line, OrderPlaced};
use busline::canonical::{Address, Customer};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::MARKETPLACE_ORDER_PLACED;

/// The web shop's order (`infra/schemas/webhooks/shop-order.v1.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopOrder {
    /// The shop's order id.
    pub order_id: String,
    /// When the customer placed it.
    #[serde(with = "busline::time::rfc3339")]
    pub placed_at: DateTime<Utc>,
    /// The customer, with the CRM's id.
    pub customer: Customer,
    /// ISO 4217.
    pub currency: String,
    /// The lines, numbered from 1 in this order in the canonical order.
    pub lines: Vec<ShopLine>,
    /// The order total, in cents; `validate-order` checks that the lines add up to it.
    pub total_cents: i64,
    /// Where it ships to, already in the canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
}

/// A web-shop line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopLine {
    /// The SKU.
    pub sku: String,
    /// How many units; the canonical order needs at least 1.
    pub quantity: i64,
    /// Price per unit, in cents.
    pub unit_price_cents: i64,
    /// The warehouse the shop assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
}

/// Web shop → canonical: the shop's ids are busline's, lines are numbered in order.
pub fn from_shop(order: ShopOrder) -> OrderPlaced {
    OrderPlaced {
        order_id: order.order_id,
        channel: Channel::WebShop,
        external_id: None,
        placed_at: order.placed_at,
        customer: order.customer,
        currency: order.currency,
        lines: (1..)
            .zip(order.lines)
            .map(|(line_no, l)| Line {
                line_no,
                sku: l.sku,
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
                warehouse: l.warehouse,
            })
            .collect(),
        total_cents: order.total_cents,
        shipping_address: order.shipping_address,
    }
}

/// Canonical → web shop, for an order placed there (the reverse of [`from_shop`]).
pub fn to_shop(order: &OrderPlaced) -> ShopOrder {
    ShopOrder {
        order_id: order.order_id.clone(),
        placed_at: order.placed_at,
        customer: order.customer.clone(),
        currency: order.currency.clone(),
        lines: order
            .lines
            .iter()
            .map(|l| ShopLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
                warehouse: l.warehouse.clone(),
            })
            .collect(),
        total_cents: order.total_cents,
        shipping_address: order.shipping_address.clone(),
    }
}

/// The marketplace's notification (`infra/schemas/webhooks/marketplace-order.v1.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceNotification {
    /// `ORDER_CHANGE`.
    pub notification_type: String,
    /// The order as it now is.
    pub payload: MarketplaceOrder,
}

/// A marketplace order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceOrder {
    /// The marketplace's order number.
    pub order_number: String,
    /// `Pending` (not paid), `Unshipped` (paid, ours to ship), `PartiallyShipped`, `Shipped`,
    /// `Canceled`.
    pub order_status: String,
    /// When the buyer bought.
    #[serde(with = "busline::time::rfc3339")]
    pub purchase_date: DateTime<Utc>,
    /// Who bought: the canonical order's customer.
    pub buyer: Buyer,
    /// The order's total; its currency is the order's, which every item's price must share.
    pub order_total: Money,
    /// What was bought.
    pub order_items: Vec<MarketplaceItem>,
    /// Where it ships to: the canonical address, less the addressee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<MarketplaceAddress>,
}

/// The buyer, as the marketplace names them: the canonical order's customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Buyer {
    /// The buyer's id, which the marketplace integration keeps equal to the CRM's customer id.
    pub buyer_id: String,
    /// Email address: the canonical customer's `email`.
    pub buyer_email: String,
    /// The buyer's name, when the marketplace gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_name: Option<String>,
}

/// A decimal amount as the marketplace writes it: `"19.99"`, `"6"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    /// ISO 4217.
    pub currency_code: String,
    /// Up to 12 digits, optionally a point and one or two decimals.
    pub amount: String,
}

/// One item of a marketplace order: a line of the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceItem {
    /// The marketplace's item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_item_id: Option<String>,
    /// Our SKU.
    pub seller_sku: String,
    /// The listing's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// How many units: the canonical line's `quantity`.
    pub quantity_ordered: i64,
    /// Price per unit, in the order's currency.
    pub unit_price: Money,
    /// Which of our warehouses ships it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_center_id: Option<String>,
}

/// The marketplace's address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceAddress {
    /// Who the parcel is addressed to; the canonical address does not keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Street and number: the canonical `line1`.
    pub address_line1: String,
    /// The rest of the street address: the canonical `line2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    /// City, passed on unchanged.
    pub city: String,
    /// Postal code, passed on unchanged as the canonical `postal_code`.
    pub postal_code: String,
    /// ISO 3166 alpha-2.
    pub country_code: String,
}

/// The prefix that keeps marketplace order ids apart from the web shop's.
pub const MARKETPLACE_ORDER_PREFIX: &str = "mkt-";

/// The one marketplace status that is an order for busline to fulfil.
pub const READY_TO_SHIP: &str = "Unshipped";

/// `"19.99"` → 1999. Digits only, at most 12 before the point and 2 after: anything else (a sign,
/// an exponent, a third decimal, a comma) is refused rather than rounded.
pub fn cents(amount: &str) -> Option<i64> {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let digits = |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty()
        || !digits(units, 12)
        || !digits(fraction, 2)
        || (amount.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let fraction = format!("{fraction:0<2}");
    Some(units.parse::<i64>().ok()? * 100 + fraction.parse::<i64>().ok()?)
}

/// 1999 → `"19.99"`.
pub fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Marketplace → canonical. A status other than `Unshipped` is not an order to fulfil yet: `None`.
/// Every amount must be in the order's currency and well formed.
pub fn from_marketplace(
    notification: MarketplaceNotification,
) -> Result<Option<OrderPlaced>, CanonicalError> {
    let order = notification.payload;
    let mut problems = Vec::new();
    if notification.notification_type != "ORDER_CHANGE" {
        problems.push(format!(
            "notificationType {:?} is not ORDER_CHANGE",
            notification.notification_type
        ));
    }
    if order.order_status != READY_TO_SHIP && problems.is_empty() {
        return Ok(None);
    }
    let currency = order.order_total.currency_code.clone();
    let mut money = |what: &str, m: &Money| {
        if m.currency_code != currency {
            problems.push(format!(
                "{what} is in {}, the order in {currency}",
                m.currency_code
            ));
        }
        cents(&m.amount).unwrap_or_else(|| {
            problems.push(format!("{what} {:?} is not an amount", m.amount));
            0
        })
    };
    let total_cents = money("orderTotal", &order.order_total);
    let lines = (1..)
        .zip(&order.order_items)
        .map(|(line_no, item)| Line {
            line_no,
            sku: item.seller_sku.clone(),
            quantity: item.quantity_ordered,
            unit_price_cents: money(&format!("item {line_no}'s unitPrice"), &item.unit_price),
            warehouse: item.fulfillment_center_id.clone(),
        })
        .collect();
    if !problems.is_empty() {
        return Err(CanonicalError::Invalid {
            event_type: MARKETPLACE_ORDER_PLACED.to_owned(),
            problems,
        });
    }
    Ok(Some(OrderPlaced {
        order_id: format!("{MARKETPLACE_ORDER_PREFIX}{}", order.order_number),
        channel: Channel::Marketplace,
        external_id: Some(order.order_number),
        placed_at: order.purchase_date,
        customer: Customer {
            id: order.buyer.buyer_id,
            email: order.buyer.buyer_email,
            name: order.buyer.buyer_name,
        },
        currency,
        lines,
        total_cents,
        shipping_address: order.shipping_address.map(|a| Address {
            line1: a.address_line1,
            line2: a.address_line2,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country_code,
        }),
    }))
}

/// Canonical → marketplace, for an order placed there (the reverse of [`from_marketplace`]; what
/// the marketplace sends and busline does not keep, the item ids, titles and addressee, is absent).
pub fn to_marketplace(order: &OrderPlaced) -> MarketplaceNotification {
    let money = |cents: i64| Money {
        currency_code: order.currency.clone(),
        amount: amount(cents),
    };
    MarketplaceNotification {
        notification_type: "ORDER_CHANGE".to_owned(),
        payload: MarketplaceOrder {
            order_number: order.external_id.clone().unwrap_or_else(|| {
                order
                    .order_id
                    .trim_start_matches(MARKETPLACE_ORDER_PREFIX)
                    .to_owned()
            }),
            order_status: READY_TO_SHIP.to_owned(),
            purchase_date: order.placed_at,
            buyer: Buyer {
                buyer_id: order.customer.id.clone(),
                buyer_email: order.customer.email.clone(),
                buyer_name: order.customer.name.clone(),
            },
            order_total: money(order.total_cents),
            order_items: order
                .lines
                .iter()
                .map(|l| MarketplaceItem {
                    order_item_id: None,
                    seller_sku: l.sku.clone(),
                    title: None,
                    quantity_ordered: l.quantity,
                    unit_price: money(l.unit_price_cents),
                    fulfillment_center_id: l.warehouse.clone(),
                })
                .collect(),
            shipping_address: order.shipping_address.as_ref().map(|a| MarketplaceAddress {
                name: None,
                address_line1: a.line1.clone(),
                address_line2: a.line2.clone(),
                city: a.city.clone(),
                postal_code: a.postal_code.clone(),
                country_code: a.country.clone(),
            }),
        },
    }
}
