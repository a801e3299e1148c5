busline_fulfillment::saga_step_main!(
    Step::CreateShipment,
    Kind::Shipping,
    create_shipment::handle
);
