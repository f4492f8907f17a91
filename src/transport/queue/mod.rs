//! The queue is the only writer of messages: bodies in the spool, metadata in PostgreSQL.

pub mod spool;
pub mod store;

pub use spool::Spool;
pub use store::{AcceptError, Envelope, EnvelopeRecipient, accept};
