//! Customer accounts on the reference table: a customer's credit standing.

use super::{CustomerRecord, DynamoDbFulfillment};
use crate::{CreditStanding, CustomerAccounts, FulfillmentError};

impl CustomerAccounts for DynamoDbFulfillment {
    async fn credit(&self, customer_id: &str) -> Result<CreditStanding, FulfillmentError> {
        Ok(self
            .get::<CustomerRecord>(
                "CustomerAccountsUnavailable",
                format!("customer#{customer_id}"),
            )
            .await?
            .map_or(
                CreditStanding {
                    limit_cents: 0,
                    owed_cents: 0,
                },
                |c| CreditStanding {
                    limit_cents: c.limit_cents,
                    owed_cents: c.owed_cents,
                },
            ))
    }
}
