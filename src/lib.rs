//! hubgate: a mail gateway with Exchange Hub/Edge transport semantics.
//!
//! The tree reads in the order a message travels: `smtp::server` receives, `transport::categorizer`
//! decides per recipient, `transport::queue` makes the message durable.

pub mod app;
pub mod config;
pub mod console;
pub mod db;
pub mod fsmode;
pub mod logs;
pub mod monitor;
pub mod ops;
pub mod org;
pub mod shell;
pub mod smtp;
pub mod stop;
pub mod tls;
pub mod transport;
