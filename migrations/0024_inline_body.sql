-- A small message's body lives in its own row (as Exchange keeps messages in its queue
-- database): the commit that makes the rows durable makes the body durable too, with no spool
-- file to create, fsync and unlink. NULL: the body is the spool file <id>.eml.
ALTER TABLE message ADD COLUMN body bytea;
-- Kept uncompressed (no CPU spent on mail that is usually gone within seconds), and rows up
-- to a whole page stay in the heap rather than going to the TOAST table.
ALTER TABLE message ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE message SET (toast_tuple_target = 8160);
