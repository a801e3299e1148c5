//! The hello world with busline's telemetry: the JSON log subscriber every function installs at
//! init, and each invocation run as a hop (a span continuing the event's trace, its "handled" line
//! and its metrics). Beside `hello-lambda`, it measures what telemetry adds to a cold start.

use busline::telemetry::Hop;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let hop = Hop::of_detail(event.payload.get("detail").unwrap_or(&Value::Null));
        hop.run(async { Ok::<_, Error>(event.payload) }).await
    }))
    .await
}
