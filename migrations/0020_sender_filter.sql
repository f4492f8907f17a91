-- The Sender Filter agent's settings (Set-SenderFilterConfig): one object per organisation, as
-- Exchange keeps it. Addresses and domains are stored in lower case.
CREATE TABLE sender_filter_config (
    id                              boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled                         boolean NOT NULL DEFAULT true,
    blocked_senders                 text[] NOT NULL DEFAULT '{}',
    blocked_domains                 text[] NOT NULL DEFAULT '{}',
    blocked_domains_and_subdomains  text[] NOT NULL DEFAULT '{}',
    blank_sender_blocking_enabled   boolean NOT NULL DEFAULT false,
    action                          text NOT NULL DEFAULT 'Reject' CHECK (action IN ('Reject'))
);
INSERT INTO sender_filter_config DEFAULT VALUES;

CREATE TRIGGER sender_filter_config_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON sender_filter_config FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();

-- hubgate's own connection rate per source address (Set-TransportServer
-- -MaxConnectionRatePerMinutePerSource); NULL: unlimited.
ALTER TABLE transport_server ADD COLUMN max_connection_rate_per_minute_per_source integer
    CHECK (max_connection_rate_per_minute_per_source >= 1);
