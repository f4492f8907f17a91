-- The organisation model (Exchange's objects and names) and the queue's message rows.
-- Durations are whole seconds; byte sizes are bytes; NULL means "unlimited" where Exchange allows it.

CREATE TABLE transport_server (
    name                                      text PRIMARY KEY,
    fqdn                                      text NOT NULL,
    -- The transport database identity that XSHADOW replies carry; a new one means "new queue database".
    database_id                               uuid NOT NULL,
    message_expiration_timeout                bigint NOT NULL DEFAULT 172800 CHECK (message_expiration_timeout BETWEEN 5 AND 7776000),
    delay_notification_timeout                bigint NOT NULL DEFAULT 14400 CHECK (delay_notification_timeout BETWEEN 1 AND 2592000),
    message_retry_interval                    bigint NOT NULL DEFAULT 60 CHECK (message_retry_interval BETWEEN 1 AND 86400),
    transient_failure_retry_count             integer NOT NULL DEFAULT 6 CHECK (transient_failure_retry_count BETWEEN 0 AND 15),
    transient_failure_retry_interval          bigint NOT NULL DEFAULT 300 CHECK (transient_failure_retry_interval BETWEEN 1 AND 43200),
    outbound_connection_failure_retry_interval bigint NOT NULL DEFAULT 600 CHECK (outbound_connection_failure_retry_interval BETWEEN 1 AND 1728000),
    max_outbound_connections                  integer DEFAULT 1000 CHECK (max_outbound_connections >= 1),
    max_per_domain_outbound_connections       integer DEFAULT 20 CHECK (max_per_domain_outbound_connections >= 1),
    max_concurrent_mailbox_deliveries         integer NOT NULL DEFAULT 20 CHECK (max_concurrent_mailbox_deliveries BETWEEN 1 AND 256),
    max_concurrent_mailbox_submissions        integer NOT NULL DEFAULT 20 CHECK (max_concurrent_mailbox_submissions BETWEEN 1 AND 256),
    max_connection_rate_per_minute            integer NOT NULL DEFAULT 1200 CHECK (max_connection_rate_per_minute >= 1),
    queue_max_idle_time                       bigint NOT NULL DEFAULT 180 CHECK (queue_max_idle_time BETWEEN 5 AND 3600),
    poison_message_detection_enabled          boolean NOT NULL DEFAULT true,
    poison_threshold                          integer NOT NULL DEFAULT 2 CHECK (poison_threshold BETWEEN 1 AND 10),
    external_delay_dsn_enabled                boolean NOT NULL DEFAULT true,
    internal_delay_dsn_enabled                boolean NOT NULL DEFAULT true,
    external_dns_servers                      text[] NOT NULL DEFAULT '{}',
    message_tracking_log_enabled              boolean NOT NULL DEFAULT true,
    message_tracking_log_subject_logging_enabled boolean NOT NULL DEFAULT true,
    intra_org_connector_protocol_logging_level text NOT NULL DEFAULT 'None' CHECK (intra_org_connector_protocol_logging_level IN ('None', 'Verbose')),
    CHECK (max_per_domain_outbound_connections IS NULL OR max_outbound_connections IS NULL
           OR max_per_domain_outbound_connections <= max_outbound_connections)
);

-- One row: the organisation-wide settings of Set-TransportConfig.
CREATE TABLE transport_config (
    id                                   boolean PRIMARY KEY DEFAULT true CHECK (id),
    shadow_redundancy_enabled            boolean NOT NULL DEFAULT true,
    shadow_heartbeat_timeout_interval    bigint NOT NULL DEFAULT 900 CHECK (shadow_heartbeat_timeout_interval >= 1),
    shadow_heartbeat_retry_count         integer NOT NULL DEFAULT 12 CHECK (shadow_heartbeat_retry_count >= 1),
    shadow_message_auto_discard_interval bigint NOT NULL DEFAULT 172800 CHECK (shadow_message_auto_discard_interval >= 5),
    max_receive_size                     bigint DEFAULT 10485760 CHECK (max_receive_size >= 0),
    max_send_size                        bigint DEFAULT 10485760 CHECK (max_send_size >= 0),
    max_recipient_envelope_limit         integer DEFAULT 5000 CHECK (max_recipient_envelope_limit >= 0),
    generate_copy_of_dsn_for             text[] NOT NULL DEFAULT '{5.4.8,5.4.6,5.4.4,5.2.4,5.2.0,5.1.4}',
    tls_receive_domain_secure_list       text[] NOT NULL DEFAULT '{}',
    tls_send_domain_secure_list          text[] NOT NULL DEFAULT '{}'
);
INSERT INTO transport_config DEFAULT VALUES;

CREATE TABLE accepted_domain (
    id                          uuid PRIMARY KEY,
    name                        text NOT NULL UNIQUE,
    -- Stored in lower case; "*.contoso.com" means the domain and its subdomains.
    domain_name                 text NOT NULL UNIQUE,
    domain_type                 text NOT NULL DEFAULT 'Authoritative'
                                CHECK (domain_type IN ('Authoritative', 'InternalRelay', 'ExternalRelay')),
    is_default                  boolean NOT NULL DEFAULT false,
    address_book_enabled        boolean NOT NULL DEFAULT true,
    -- hubgate's addition (the backup-MX wish): per-domain overrides of the server's Limits.
    message_expiration_timeout  bigint CHECK (message_expiration_timeout BETWEEN 5 AND 7776000),
    delay_notification_timeout  bigint CHECK (delay_notification_timeout BETWEEN 1 AND 2592000)
);
CREATE UNIQUE INDEX accepted_domain_one_default ON accepted_domain (is_default) WHERE is_default;

CREATE TABLE recipient (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL UNIQUE,
    recipient_type          text NOT NULL CHECK (recipient_type IN ('Mailbox', 'MailContact', 'MailUser')),
    primary_smtp_address    text NOT NULL,
    external_email_address  text
);
-- Every SMTP proxy address of a recipient, lower case, unique across the organisation.
CREATE TABLE recipient_address (
    address       text PRIMARY KEY,
    recipient_id  uuid NOT NULL REFERENCES recipient (id) ON DELETE CASCADE
);

CREATE TABLE receive_connector (
    id                                          uuid PRIMARY KEY,
    server                                      text NOT NULL REFERENCES transport_server (name) ON DELETE CASCADE,
    name                                        text NOT NULL,
    enabled                                     boolean NOT NULL DEFAULT true,
    bindings                                    text[] NOT NULL,
    remote_ip_ranges                            text[] NOT NULL,
    fqdn                                        text NOT NULL,
    banner                                      text,
    comment                                     text,
    auth_mechanism                              text[] NOT NULL DEFAULT '{Tls}',
    permission_groups                           text[] NOT NULL DEFAULT '{}',
    max_message_size                            bigint NOT NULL DEFAULT 10485760 CHECK (max_message_size BETWEEN 65536 AND 2147483647),
    max_header_size                             bigint NOT NULL DEFAULT 65536 CHECK (max_header_size BETWEEN 1 AND 2147483647),
    max_recipients_per_message                  integer NOT NULL DEFAULT 200 CHECK (max_recipients_per_message BETWEEN 1 AND 512000),
    max_inbound_connection                      integer DEFAULT 5000 CHECK (max_inbound_connection >= 1),
    max_inbound_connection_per_source           integer DEFAULT 20 CHECK (max_inbound_connection_per_source BETWEEN 1 AND 10000),
    max_inbound_connection_percentage_per_source integer NOT NULL DEFAULT 2 CHECK (max_inbound_connection_percentage_per_source BETWEEN 1 AND 100),
    connection_timeout                          bigint NOT NULL DEFAULT 600 CHECK (connection_timeout BETWEEN 1 AND 86400),
    connection_inactivity_timeout               bigint NOT NULL DEFAULT 300 CHECK (connection_inactivity_timeout BETWEEN 1 AND 86400),
    max_hop_count                               integer NOT NULL DEFAULT 30 CHECK (max_hop_count BETWEEN 1 AND 500),
    max_local_hop_count                         integer NOT NULL DEFAULT 8 CHECK (max_local_hop_count BETWEEN 0 AND 50),
    max_logon_failures                          integer NOT NULL DEFAULT 3 CHECK (max_logon_failures BETWEEN 0 AND 10),
    max_protocol_errors                         integer DEFAULT 5 CHECK (max_protocol_errors >= 0),
    message_rate_limit                          integer CHECK (message_rate_limit >= 1),
    message_rate_source                         text NOT NULL DEFAULT 'IPAddress' CHECK (message_rate_source IN ('None', 'IPAddress', 'User', 'All')),
    tarpit_interval                             bigint NOT NULL DEFAULT 5 CHECK (tarpit_interval BETWEEN 0 AND 600),
    max_acknowledgement_delay                   bigint NOT NULL DEFAULT 30 CHECK (max_acknowledgement_delay BETWEEN 0 AND 600),
    protocol_logging_level                      text NOT NULL DEFAULT 'None' CHECK (protocol_logging_level IN ('None', 'Verbose')),
    require_tls                                 boolean NOT NULL DEFAULT false,
    require_ehlo_domain                         boolean NOT NULL DEFAULT false,
    orar_enabled                                boolean NOT NULL DEFAULT false,
    enable_auth_gssapi                          boolean NOT NULL DEFAULT false,
    size_enabled                                text NOT NULL DEFAULT 'Enabled' CHECK (size_enabled IN ('Enabled', 'Disabled', 'EnabledWithoutValue')),
    domain_secure_enabled                       boolean NOT NULL DEFAULT false,
    pipelining_enabled                          boolean NOT NULL DEFAULT true,
    dsn_enabled                                 boolean NOT NULL DEFAULT true,
    enhanced_status_codes_enabled               boolean NOT NULL DEFAULT true,
    eight_bit_mime_enabled                      boolean NOT NULL DEFAULT true,
    binary_mime_enabled                         boolean NOT NULL DEFAULT true,
    chunking_enabled                            boolean NOT NULL DEFAULT true,
    smtp_utf8_enabled                           boolean NOT NULL DEFAULT true,
    UNIQUE (server, name),
    CHECK (connection_timeout > connection_inactivity_timeout)
);

CREATE TABLE send_connector (
    id                               uuid PRIMARY KEY,
    name                             text NOT NULL UNIQUE,
    enabled                          boolean NOT NULL DEFAULT true,
    usage                            text NOT NULL DEFAULT 'Custom' CHECK (usage IN ('Custom', 'Internal', 'Internet', 'Partner')),
    -- Each entry "Type:space;cost", e.g. "SMTP:*.contoso.com;1".
    address_spaces                   text[] NOT NULL,
    is_scoped_connector              boolean NOT NULL DEFAULT false,
    dns_routing_enabled              boolean NOT NULL DEFAULT true,
    smart_hosts                      text[] NOT NULL DEFAULT '{}',
    smart_host_auth_mechanism        text NOT NULL DEFAULT 'None'
                                     CHECK (smart_host_auth_mechanism IN ('None', 'BasicAuth', 'BasicAuthRequireTLS', 'ExchangeServer', 'ExternalAuthoritative')),
    -- The smart-host credential must be replayed in AUTH, so it is stored recoverably.
    auth_username                    text,
    auth_password                    text,
    port                             integer NOT NULL DEFAULT 25 CHECK (port BETWEEN 0 AND 65535),
    require_tls                      boolean NOT NULL DEFAULT false,
    ignore_starttls                  boolean NOT NULL DEFAULT false,
    tls_auth_level                   text CHECK (tls_auth_level IN ('EncryptionOnly', 'CertificateValidation', 'DomainValidation')),
    tls_domain                       text,
    max_message_size                 bigint DEFAULT 10485760 CHECK (max_message_size >= 0),
    connection_inactivity_timeout    bigint NOT NULL DEFAULT 600 CHECK (connection_inactivity_timeout BETWEEN 1 AND 86400),
    force_helo                       boolean NOT NULL DEFAULT false,
    fqdn                             text,
    use_external_dns_servers_enabled boolean NOT NULL DEFAULT false,
    source_transport_servers         text[] NOT NULL DEFAULT '{}',
    protocol_logging_level           text NOT NULL DEFAULT 'None' CHECK (protocol_logging_level IN ('None', 'Verbose')),
    error_policies                   text NOT NULL DEFAULT 'Default' CHECK (error_policies IN ('Default', 'DowngradeAuthFailures', 'DowngradeDnsFailures')),
    domain_secure_enabled            boolean NOT NULL DEFAULT false,
    smtp_max_messages_per_connection integer NOT NULL DEFAULT 20 CHECK (smtp_max_messages_per_connection >= 1),
    comment                          text,
    -- hubgate's addition: per-connector overrides of the server's Limits.
    message_expiration_timeout       bigint CHECK (message_expiration_timeout BETWEEN 5 AND 7776000),
    delay_notification_timeout       bigint CHECK (delay_notification_timeout BETWEEN 1 AND 2592000),
    CHECK (NOT (dns_routing_enabled AND cardinality(smart_hosts) > 0)),
    CHECK (NOT (require_tls AND ignore_starttls))
);

-- Extended-rights entries of a connector's ACL (Add-ADPermission). Entries that a permission group
-- put there carry the group's name, so changing PermissionGroups can rewrite exactly those.
CREATE TABLE connector_permission (
    id                bigserial PRIMARY KEY,
    connector_id      uuid NOT NULL,
    principal         text NOT NULL,
    extended_right    text NOT NULL,
    deny              boolean NOT NULL DEFAULT false,
    permission_group  text,
    UNIQUE (connector_id, principal, extended_right, deny, permission_group)
);
CREATE INDEX connector_permission_by_connector ON connector_permission (connector_id);

CREATE TABLE account (
    id             uuid PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    -- "Organization Management" may use the console; "Exchange Servers" / "Partner Servers"
    -- give an SMTP session that authenticates as this account those identities.
    member_of      text[] NOT NULL DEFAULT '{}'
);

-- Queue metadata. The body lives in the spool directory under the message id.
CREATE TABLE message (
    id                   uuid PRIMARY KEY,
    server               text NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    from_address         text NOT NULL,
    size                 bigint NOT NULL,
    source_ip            text NOT NULL,
    receive_connector    text NOT NULL,
    helo                 text NOT NULL,
    auth_user            text,
    internet_message_id  text,
    subject              text,
    env_id               text,
    ret                  text,
    body_type            text,
    smtp_utf8            boolean NOT NULL DEFAULT false,
    shadow_message_id    text,
    -- The number Exchange shows as [InternalId=n] in the 250 after DATA.
    internal_id          bigserial NOT NULL UNIQUE
);
CREATE INDEX message_by_server ON message (server, received_at);

CREATE TABLE message_recipient (
    message_id       uuid NOT NULL REFERENCES message (id) ON DELETE CASCADE,
    ordinal          integer NOT NULL,
    address          text NOT NULL,
    orcpt            text,
    notify           text,
    -- Where the categorizer sent the recipient: a local mailbox, or out through routing.
    disposition      text NOT NULL CHECK (disposition IN ('Mailbox', 'Relay')),
    status           text NOT NULL DEFAULT 'Ready',
    PRIMARY KEY (message_id, ordinal)
);

-- A running gateway reloads its configuration when any of these tables change.
CREATE FUNCTION hubgate_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hubgate_config', TG_TABLE_NAME);
    RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['transport_server', 'transport_config', 'accepted_domain', 'recipient',
                             'recipient_address', 'receive_connector', 'send_connector',
                             'connector_permission', 'account']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config()', t || '_notify', t);
    END LOOP;
END $$;
