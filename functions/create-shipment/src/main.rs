//! The `create-shipment` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga step: creates an
//! order's shipment, picking slip and tracking number, once.
busline_fulfillment::saga_step_main!(
    Step::CreateShipment,
    Kind::Shipping,
    create_shipment::handle
);
