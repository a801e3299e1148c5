busline_fulfillment::saga_step_main!(Step::TakePayment, Kind::Payments, take_payment::handle);
