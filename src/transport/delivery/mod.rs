//! Delivery: handing a queued message to its next hop. `mailbox` writes local Maildir++ folders,
//! `local` runs the mailbox delivery queue over it, `smtp` runs a remote delivery queue over the
//! SMTP client.

pub mod local;
pub mod mailbox;
pub mod smtp;
