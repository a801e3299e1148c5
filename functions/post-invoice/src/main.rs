busline_fulfillment::saga_step_main!(Step::PostInvoice, Kind::Invoicing, post_invoice::handle);
