-- A small message's body lives in the queue database (as Exchange keeps messages in its queue
-- database): the commit that makes the message's rows durable makes the body durable too, with
-- no spool file to create, fsync and unlink. A message without a row here has its body in the
-- spool, <id>.eml. A table of its own keeps `message` narrow for the Queue Viewer's scans; the
-- queue writer deletes both rows together (it is the only deleter of messages).
CREATE TABLE message_body (
    id   uuid PRIMARY KEY,
    body bytea NOT NULL
) WITH (toast_tuple_target = 8160);
-- Kept uncompressed (no CPU spent on mail that is usually gone within seconds), and a row up to
-- a whole page stays in the heap rather than going to the TOAST table.
ALTER TABLE message_body ALTER COLUMN body SET STORAGE EXTERNAL;
