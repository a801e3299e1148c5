//! The `refund-payment` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga compensation: refunds
//! an order's captured payment, once.
busline_fulfillment::saga_step_main!(Step::RefundPayment, Kind::Payments, refund_payment::handle);
