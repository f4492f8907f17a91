-- Route: delivery queues, per-recipient queue state and the history of delivery attempts.
--
-- The queue manager keeps ready work in memory; these rows are what survives a restart and what
-- the shell and console show (Get-Queue, Get-Message). Administrative operations write here and
-- then NOTIFY hubgate_queue so the running gateway picks them up.

-- One row per delivery queue Exchange would show on this server (reference §6.2): remote
-- delivery queues keyed by (DeliveryType, NextHopDomain, connector), the mailbox delivery queue,
-- and Unreachable. Submission and Poison are not rows: Submission holds the recipients with no
-- queue yet, Poison the messages marked poison.
CREATE TABLE delivery_queue (
    id               bigserial PRIMARY KEY,
    server           text NOT NULL,
    delivery_type    text NOT NULL CHECK (delivery_type IN ('DnsConnectorDelivery', 'SmartHostConnectorDelivery', 'MapiDelivery', 'Unreachable')),
    next_hop_domain  text NOT NULL,
    connector_id     uuid,
    -- Suspend-Queue: set by an administrator, kept across restarts.
    suspended        boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'Ready' CHECK (status IN ('Active', 'Ready', 'Retry', 'Suspended')),
    last_error       text,
    last_retry_time  timestamptz,
    next_retry_time  timestamptz,
    UNIQUE NULLS NOT DISTINCT (server, delivery_type, next_hop_domain, connector_id)
);

ALTER TABLE message
    -- Suspend-Message.
    ADD COLUMN suspended boolean NOT NULL DEFAULT false,
    -- How many times the gateway died while this message was being processed (PoisonThreshold).
    ADD COLUMN crash_count integer NOT NULL DEFAULT 0,
    ADD COLUMN poison boolean NOT NULL DEFAULT false;

-- status: Ready | Retry | Delivered | Failed. A message whose recipients are all Delivered or
-- Failed is deleted with its body.
ALTER TABLE message_recipient
    ADD COLUMN queue_id bigint REFERENCES delivery_queue (id) ON DELETE SET NULL,
    -- Where the recipient is really sent: a mail contact's external address, else NULL (= address).
    ADD COLUMN route_address text,
    ADD COLUMN retry_count integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN last_retry_time timestamptz,
    ADD COLUMN next_retry_time timestamptz,
    ADD COLUMN delay_notified boolean NOT NULL DEFAULT false,
    -- Remove-Message: true = with NDR, false = without; the gateway finalises it.
    ADD COLUMN remove_with_ndr boolean;
CREATE INDEX message_recipient_by_queue ON message_recipient (queue_id) WHERE queue_id IS NOT NULL;

-- Every delivery attempt that did not end the recipient's life in its first try, per recipient
-- (first-try successes are only in the message tracking log).
CREATE TABLE delivery_attempt (
    id            bigserial PRIMARY KEY,
    message_id    uuid NOT NULL REFERENCES message (id) ON DELETE CASCADE,
    ordinal       integer NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    next_hop      text,
    remote_ip     text,
    reply         text NOT NULL,
    tls_version   text
);
CREATE INDEX delivery_attempt_by_message ON delivery_attempt (message_id, ordinal);
