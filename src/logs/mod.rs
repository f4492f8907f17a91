//! Logs kept in the formats Exchange administrators already read and parse.

pub mod protocol;
pub mod read;
pub mod retention;
pub mod tracking;
