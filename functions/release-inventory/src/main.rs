//! The `release-inventory` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga compensation: puts back
//! what an order reserved, once.
busline_fulfillment::saga_step_main!(
    Step::ReleaseInventory,
    Kind::Inventory,
    release_inventory::handle
);
