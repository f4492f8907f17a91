//! SMTP: the sans-I/O protocol layer, the receive side and the send side.

pub mod client;
pub mod proto;
pub mod server;
