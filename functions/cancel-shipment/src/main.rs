busline_fulfillment::saga_step_main!(
    Step::CancelShipment,
    Kind::Shipping,
    cancel_shipment::handle
);
