//! `make trace ID=<id>`: one business event's journey through the stack `make deploy-local`
//! deployed on LocalStack, from the functions' logs and the saga's execution. The id may be an
//! order id, an event id, a correlation id or a trace id.

use anyhow::{Context, Result};
use busline_tests::localstack;
use busline_tests::trace::{journey, print};

#[tokio::main]
async fn main() -> Result<()> {
    let id = std::env::args()
        .nth(1)
        .filter(|id| !id.is_empty())
        .context("usage: make trace ID=<order id, event id, correlation id or trace id>")?;
    let aws = localstack().await?;
    let journey = journey(&aws, &id).await?;
    print(&id, &journey);
    if journey.traces.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
