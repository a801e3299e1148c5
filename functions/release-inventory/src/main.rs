busline_fulfillment::saga_step_main!(
    Step::ReleaseInventory,
    Kind::Inventory,
    release_inventory::handle
);
