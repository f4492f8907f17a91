//! SMTP: the sans-I/O protocol layer and the receive side.

pub mod proto;
pub mod server;
