//! `make soak`: the full soak on the deployed stack (`busline_tests::soak`, `Plan::full`): prints
//! its conservation figures, writes them as a section of `make bench`'s report
//! (`target/bench/soak.json`), and fails if a promise was broken.
//!
//! `SOAK_WEBHOOKS=<n>` changes the number of webhooks (default 2,000).

use anyhow::Result;
use busline_tests::localstack;
use busline_tests::soak::{self, Plan};

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let mut plan = Plan::full();
    if let Ok(n) = std::env::var("SOAK_WEBHOOKS") {
        plan.webhooks = n.parse()?;
    }
    let figures = soak::run(&aws, &plan).await?;
    println!("{}", figures.text());
    figures.section().publish("soak")?;
    soak::check(&figures)
}
