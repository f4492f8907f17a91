-- The Recipient Filter agent (Set-RecipientFilterConfig): one row for the organisation, with
-- Exchange's defaults, and hubgate's recipient callout settings (TimeSpans in seconds).
CREATE TABLE recipient_filter_config (
    singleton                              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled                                boolean NOT NULL DEFAULT true,
    external_mail_enabled                  boolean NOT NULL DEFAULT true,
    recipient_validation_enabled           boolean NOT NULL DEFAULT false,
    block_list_enabled                     boolean NOT NULL DEFAULT false,
    blocked_recipients                     text[] NOT NULL DEFAULT '{}',
    recipient_callout_enabled              boolean NOT NULL DEFAULT true,
    recipient_callout_timeout              bigint NOT NULL DEFAULT 10,
    recipient_callout_valid_cache_timeout  bigint NOT NULL DEFAULT 604800,
    recipient_callout_unknown_cache_timeout bigint NOT NULL DEFAULT 7200
);
INSERT INTO recipient_filter_config DEFAULT VALUES;

CREATE TRIGGER recipient_filter_config_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON recipient_filter_config FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();

-- hubgate's imported valid recipients of relay domains (Import-/Add-ValidRecipient): a domain
-- with any entry here is validated against this list only. Addresses lower-cased. Read per RCPT,
-- not part of the configuration snapshot: no reload trigger.
CREATE TABLE valid_recipient (
    address text PRIMARY KEY,
    domain  text NOT NULL,
    added   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX valid_recipient_by_domain ON valid_recipient (domain);

-- What recipient callouts to a relay domain's next hop learned, kept past a restart so that
-- validation goes on answering while the primary is down. Expired rows still answer then.
CREATE TABLE recipient_callout (
    address    text PRIMARY KEY,
    valid      boolean NOT NULL,
    reply      text NOT NULL,
    checked_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX recipient_callout_by_checked ON recipient_callout (checked_at);
