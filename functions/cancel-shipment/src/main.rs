//! The `cancel-shipment` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga compensation: cancels
//! an order's shipment, once.
busline_fulfillment::saga_step_main!(
    Step::CancelShipment,
    Kind::Shipping,
    cancel_shipment::handle
);
