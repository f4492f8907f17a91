-- The Queue Viewer's reads compare lower(m.server) with the server's name. Without an index on
-- that expression PostgreSQL keeps no statistics for it and guesses a fraction of a percent of
-- the messages, so a 100,000-message listing got a plan made for a few hundred (bench/README.md).
-- The index gives the planner the truth (one server holds all its messages) after ANALYZE, and
-- in the default order (DateReceived, then the identity) the first page of a server's messages
-- reads its own 200 rows instead of sorting them all.
CREATE INDEX message_by_lower_server ON message (lower(server), received_at, internal_id);

-- The Poison queue's count reads only the few poison messages.
CREATE INDEX message_poison_by_server ON message (lower(server)) WHERE poison;

-- The Submission queue's count reads only the recipients not routed yet (few, or none, while a
-- backlog waits in the delivery queues).
CREATE INDEX message_recipient_in_submission ON message_recipient (message_id)
    WHERE queue_id IS NULL AND status NOT IN ('Delivered', 'Failed');
