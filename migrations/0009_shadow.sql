-- Shadow redundancy (Exchange 2010's model; reference §1). A node is the *primary* for the
-- messages it accepted from a shadowing sender, and the *shadow* for the messages it handed to a
-- primary that accepted XSHADOW.

-- Primary side -----------------------------------------------------------------------------

-- This node's queue database id, answered to XSHADOW as Base64 of its 16 bytes. It lives in the
-- queue database, so a recreated database answers a new id and the shadow servers resubmit.
CREATE TABLE queue_database (
    server      text PRIMARY KEY,
    dbid        uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The sending shadow server's context (the argument of its XSHADOW command) for a message whose
-- MAIL carried XSHADOW= (kept in message.shadow_message_id since 0001).
ALTER TABLE message
    ADD COLUMN shadow_context text,
    -- A discard event was queued for it: once, however it ends.
    ADD COLUMN shadow_discard_queued boolean NOT NULL DEFAULT false;

-- Discard events waiting for the XQDISCARD of the shadow server with that context; dropped
-- after TransportConfig ShadowMessageAutoDiscardInterval.
CREATE TABLE shadow_discard (
    id                 bigserial PRIMARY KEY,
    -- This node, the primary.
    server             text NOT NULL,
    context            text NOT NULL,
    shadow_message_id  text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shadow_discard_by_context ON shadow_discard (server, context, id);
CREATE INDEX shadow_discard_by_age ON shadow_discard (created_at);

-- A message with a shadow leaves the queue (every recipient delivered, relayed or failed; or
-- removed by an administrator, on any path): its shadow server may discard its copy. A message
-- whose last recipients went to a further primary as shadow copies was marked queued already.
CREATE FUNCTION hubgate_shadow_discard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.shadow_message_id IS NOT NULL AND OLD.shadow_context IS NOT NULL
       AND NOT OLD.shadow_discard_queued THEN
        INSERT INTO shadow_discard (server, context, shadow_message_id)
        VALUES (OLD.server, OLD.shadow_context, OLD.shadow_message_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER message_shadow_discard AFTER DELETE ON message
    FOR EACH ROW EXECUTE FUNCTION hubgate_shadow_discard();

-- Shadow side ------------------------------------------------------------------------------

-- A Shadow Redundancy queue per primary: a delivery_queue row with DeliveryType
-- ShadowRedundancy and NextHopDomain the primary's FQDN. Its recipients have status 'Shadow':
-- handed to the primary, kept here until it reports them done (XQDISCARD) or stops answering.
ALTER TABLE delivery_queue DROP CONSTRAINT delivery_queue_delivery_type_check;
ALTER TABLE delivery_queue ADD CONSTRAINT delivery_queue_delivery_type_check
    CHECK (delivery_type IN ('DnsConnectorDelivery', 'SmartHostConnectorDelivery', 'MapiDelivery',
                             'Unreachable', 'ShadowRedundancy'));

-- How to reach the primary of a shadow queue for heartbeats, and what it last said.
CREATE TABLE shadow_primary (
    queue_id             bigint PRIMARY KEY REFERENCES delivery_queue (id) ON DELETE CASCADE,
    -- The send connector the copies left through (its auth, TLS and port serve the heartbeat).
    connector_id         uuid,
    -- The host and port the copies were handed to.
    host                 text NOT NULL,
    port                 integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    -- The primary's last XSHADOW reply (Base64 dbid); a change means a new queue database.
    dbid                 text,
    heartbeat_failures   integer NOT NULL DEFAULT 0,
    last_contact         timestamptz NOT NULL DEFAULT now()
);
