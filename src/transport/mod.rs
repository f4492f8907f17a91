//! What happens to a message after the SMTP session: categorize, then make it durable.

pub mod antispam_stats;
pub mod backscatter;
pub mod categorizer;
pub mod clock;
pub mod delivery;
pub mod dsn;
pub mod headers;
pub mod pressure;
pub mod queue;
pub mod recipient_callout;
pub mod routing;
pub mod shadow;
pub mod spf;
pub mod stats;
