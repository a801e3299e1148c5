//! The `take-payment` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. Saga step: authorizes and captures an
//! order's total, once.
busline_fulfillment::saga_step_main!(Step::TakePayment, Kind::Payments, take_payment::handle);
