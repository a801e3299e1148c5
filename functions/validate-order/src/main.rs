//! The `validate-order` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga step: checks an order's
//! lines, quantities, totals and currency before anything is done for it.
busline_fulfillment::saga_step_main!(Step::ValidateOrder, validate_order::handle);
