//! New SMTP Send Connector (owned by the send-wizard work).
