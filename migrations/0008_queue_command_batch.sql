-- A filtered message action is one command: the messages it acts on, checked by the caller.
-- For Remove-Message, message_ids and ordinals are parallel (one entry per recipient); for
-- Suspend-/Resume-Message, message_ids holds each message once. Empty: a one-message command
-- (message_id).
ALTER TABLE queue_command ADD COLUMN message_ids uuid[] NOT NULL DEFAULT '{}';
