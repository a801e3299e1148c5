busline_fulfillment::saga_step_main!(Step::ValidateOrder, validate_order::handle);
