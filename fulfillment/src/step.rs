//! A saga step as a Lambda function: the runtime loop that hands each invocation's state to the
//! step's handler and records its transition in the status projection ([`crate::status`]).

use std::future::Future;

use busline::error::{Classify, ErrorClass};
use busline::telemetry::Hop;
use serde::Serialize;

use crate::status::{OrderTracker, StatusError, Step, Transition};
use crate::{CreditDecision, FulfillmentError, Invoice, Payment, Reservation, SagaState, Shipment};

/// What a step's answer adds to the order's status.
pub trait Progress {
    /// The tracking number, when the answer carries one.
    fn tracking_number(&self) -> Option<&str> {
        None
    }
}

impl Progress for () {}
impl Progress for Reservation {}
impl Progress for Payment {}
impl Progress for Invoice {}
impl Progress for CreditDecision {}
impl Progress for Shipment {
    fn tracking_number(&self) -> Option<&str> {
        Some(&self.tracking_number)
    }
}

/// Runs a saga step and records its transition: done, or failed for a business reason (with the
/// reason). A retryable failure records nothing, as the step runs again.
///
/// The projection is a read model, and its outage never changes an order's outcome: when a
/// transition cannot be recorded the step's own answer stands (success or business failure), the
/// miss is logged and counted (`StatusWriteFailed`, which `StatusWriteFailedAlarm` watches), and the
/// projection catches up at the order's next transition. Before, a step that succeeded failed with
/// `OrderStatusUnavailable`, and after its retries the saga compensated: a taken payment was
/// refunded because a status table was down.
pub async fn track<T, F>(
    tracker: &impl OrderTracker,
    step: Step,
    order_id: &str,
    work: F,
) -> Result<T, FulfillmentError>
where
    T: Progress,
    F: Future<Output = Result<T, FulfillmentError>>,
{
    match work.await {
        Ok(answer) => {
            let transition =
                Transition::done(step, order_id).with_tracking_number(answer.tracking_number());
            if let Err(e) = tracker.record(&transition).await {
                status_write_failed(step, order_id, &e);
            }
            Ok(answer)
        }
        Err(error) if error.class() == ErrorClass::Permanent => {
            if let Err(e) = tracker
                .record(&Transition::failed(step, order_id, &error))
                .await
            {
                status_write_failed(step, order_id, &e);
            }
            Err(error)
        }
        Err(error) => Err(error),
    }
}

fn status_write_failed(step: Step, order_id: &str, error: &StatusError) {
    tracing::warn!(order_id, step = step.name(), error = %busline::error::with_causes(error), "could not record the order's status; the step's outcome stands, and the next transition catches the projection up");
    // One dimension for every step, so one alarm watches them all; the log line names the step.
    busline::telemetry::Metrics::new("busline")
        .dimension("Projection", "order-status")
        .metric("StatusWriteFailed", busline::telemetry::Unit::Count, 1.0)
        .emit();
}

/// The whole `main` of a saga step: JSON logs, the SDK's configuration, the order tracker from the
/// environment, then [`serve_step`] with `handle`. With a system kind, `handle(state, &system)` is
/// given the system of that [`Kind`](crate::system::Kind) from the environment.
///
/// ```ignore
/// busline_fulfillment::saga_step_main!(Step::TakePayment, Kind::Payments, take_payment::handle);
/// busline_fulfillment::saga_step_main!(Step::ValidateOrder, validate_order::handle);
/// ```
///
/// The crate that calls it depends on `tokio` (for `#[tokio::main]`) and `lambda_runtime`.
#[macro_export]
macro_rules! saga_step_main {
    (Step::$step:ident, Kind::$kind:ident, $handle:path) => {
        #[tokio::main]
        async fn main() -> Result<(), lambda_runtime::Error> {
            use $crate::status::{DynamoDbOrderTracker, Step};
            use $crate::step::serve_step;
            use $crate::system::{Kind, System};
            $crate::__busline::telemetry::init_tracing();
            let aws = $crate::__busline::aws::load_config().await?;
            let system =
                System::from_env(Kind::$kind, &$crate::__busline::config::ProcessEnv, &aws)?;
            let tracker =
                DynamoDbOrderTracker::from_env(&$crate::__busline::config::ProcessEnv, &aws)?;
            serve_step(&tracker, Step::$step, |state| $handle(state, &system)).await
        }
    };
    (Step::$step:ident, $handle:path) => {
        #[tokio::main]
        async fn main() -> Result<(), lambda_runtime::Error> {
            use $crate::status::{DynamoDbOrderTracker, Step};
            use $crate::step::serve_step;
            $crate::__busline::telemetry::init_tracing();
            let aws = $crate::__busline::aws::load_config().await?;
            let tracker =
                DynamoDbOrderTracker::from_env(&$crate::__busline::config::ProcessEnv, &aws)?;
            serve_step(&tracker, Step::$step, $handle).await
        }
    };
}

/// Serves a saga step as a Lambda function: each invocation's [`SagaState`] goes to `handler`, its
/// transition is recorded ([`track`]), and an error becomes the `Diagnostic` whose `errorType` the
/// state machine matches.
pub async fn serve_step<T, F, Fut>(
    tracker: &impl OrderTracker,
    step: Step,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    T: Progress + Serialize,
    F: Fn(SagaState) -> Fut,
    Fut: Future<Output = Result<T, FulfillmentError>>,
{
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<SagaState>| {
            let state = &event.payload;
            let order_id = state.order.order_id.clone();
            // The step continues the trace of the event that started the saga; its metrics are
            // under the event type `saga/<step>`.
            let hop = Hop::new(
                state.traceparent.as_deref(),
                state.correlation_id.as_deref().unwrap_or(&order_id),
                &order_id,
                &format!("saga/{}", step.name()),
            );
            let work = handler(event.payload);
            // Boxed: nesting the handler's future in the runtime's makes a type too deep to lay out.
            Box::pin(async move {
                let result = hop
                    .run(async {
                        let result = track(tracker, step, &order_id, work).await;
                        let outcome = result.as_ref().map_or_else(|e| e.error_type(), |_| "done");
                        tracing::info!(order_id, step = step.name(), outcome, "step finished");
                        result
                    })
                    .await;
                result.map_err(|e| busline::error::diagnostic(&e))
            })
        },
    ))
    .await
}
