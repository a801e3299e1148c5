//! The short soak (`make test`): 150 webhooks from 4 senders under the full soak's mix of duplicates,
//! poison, executor faults and a bus outage, with CDC writes and a batch sync beside them; then the
//! conservation check (`busline_tests::soak`). `make soak` runs the full one.
//!
//! It binds the stub receivers' ports (8025-8027) and fills the executor's fault file, so it is a
//! test binary of its own: cargo runs test binaries one at a time. `make test` runs it first, before
//! the rest of the suite has loaded LocalStack with test functions and leftovers
//! (`cargo test -p busline-tests --test soak -- --ignored`); the workspace run lists it as ignored.

use busline_tests::localstack;
use busline_tests::soak::{self, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "make test runs it first, on the freshly deployed stack: cargo test -p busline-tests --test soak -- --ignored"]
async fn nothing_is_lost_duplicated_or_left_in_flight_under_load_and_faults() {
    let aws = localstack().await.unwrap();
    let figures = soak::run(&aws, &Plan::short()).await.unwrap();
    println!("{}", figures.text());
    soak::check(&figures).unwrap();
}
