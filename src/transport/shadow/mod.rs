//! Shadow redundancy (reference §1): the primary's bookkeeping for the shadow servers that hand
//! it messages, and (later) the shadow side's copies of what this node handed on.

pub mod primary;
