//! New Receive Connector (owned by the receive-wizard work).
