-- The Connection Filtering agent's IP Block List providers (DNSBLs), organisation-wide, and the
-- two one-row settings objects that go with them: IPBlockListProvidersConfig (the providers as a
-- whole) and IPBlockListConfig (the static IP Block List's replies).
CREATE TABLE ip_block_list_provider (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL,
    lookup_domain       text NOT NULL,
    -- 1..n without gaps; unique at the end of each statement, so a shift renumbers in one go.
    priority            integer NOT NULL CHECK (priority >= 1),
    enabled             boolean NOT NULL DEFAULT true,
    any_match           boolean NOT NULL DEFAULT false,
    bitmask_match       text,
    ip_addresses_match  text[] NOT NULL DEFAULT '{}',
    rejection_response  text,
    CONSTRAINT ip_block_list_provider_priority UNIQUE (priority) DEFERRABLE INITIALLY DEFERRED
);
CREATE UNIQUE INDEX ip_block_list_provider_name ON ip_block_list_provider (lower(name));

CREATE TABLE ip_block_list_providers_config (
    id                     boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled                boolean NOT NULL DEFAULT true,
    external_mail_enabled  boolean NOT NULL DEFAULT true,
    internal_mail_enabled  boolean NOT NULL DEFAULT false,
    bypassed_recipients    text[] NOT NULL DEFAULT '{}'
);
INSERT INTO ip_block_list_providers_config DEFAULT VALUES;

CREATE TABLE ip_block_list_config (
    id                               boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled                          boolean NOT NULL DEFAULT true,
    external_mail_enabled            boolean NOT NULL DEFAULT true,
    internal_mail_enabled            boolean NOT NULL DEFAULT false,
    machine_entry_rejection_response text,
    static_entry_rejection_response  text
);
INSERT INTO ip_block_list_config DEFAULT VALUES;

CREATE TRIGGER ip_block_list_provider_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ip_block_list_provider FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();
CREATE TRIGGER ip_block_list_providers_config_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ip_block_list_providers_config FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();
CREATE TRIGGER ip_block_list_config_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ip_block_list_config FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();
