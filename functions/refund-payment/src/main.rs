busline_fulfillment::saga_step_main!(Step::RefundPayment, Kind::Payments, refund_payment::handle);
