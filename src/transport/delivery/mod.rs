//! Delivery: handing a queued message to its next hop. `mailbox` writes local Maildir++ folders;
//! the SMTP client for remote next hops joins it later.

pub mod mailbox;
