//! Shadow redundancy (reference §1): the shadow side keeps a copy of what it handed to a primary
//! until the primary reports it done; the primary side answers XSHADOW and XQDISCARD. One job
//! per file; the copies themselves are queue state, owned by the queue manager.

pub mod discard;
pub mod gate;
pub mod heartbeat;
pub mod primary;
