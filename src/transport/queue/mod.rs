//! The queue is the only writer of messages: bodies (in rows or the spool) and metadata.

pub mod commit;
pub mod manager;
pub mod ops;
pub mod recycle;
pub mod spool;
pub mod status;
pub mod store;
pub mod writer;

pub use commit::Committer;
pub use manager::{QueueManager, Submitted};
pub use spool::{Incoming, Spool};
pub use status::{QueueStatus, RecipientStatus};
pub use store::{
    AcceptError, Disposition, Envelope, EnvelopeRecipient, ShadowOrigin, accept, accept_incoming,
};
