//! The `post-invoice` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. Saga step: posts an order's invoice, once.
busline_fulfillment::saga_step_main!(Step::PostInvoice, Kind::Invoicing, post_invoice::handle);
