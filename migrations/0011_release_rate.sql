-- Resume at N messages per minute: a queue released gradually when its next hop comes back
-- (the outage view, Resume-Queue -MessagesPerMinute). The queue manager hands at most N of the
-- queue's messages to delivery per minute, evenly spread, and clears the rate when the queue
-- empties or Resume-Queue is run without one. Kept on the row so a restart keeps the pace.
ALTER TABLE delivery_queue
    ADD COLUMN release_rate integer CHECK (release_rate BETWEEN 1 AND 10000);

-- The command that sets it: Resume-Queue with a rate is its own verb, so a gateway that does not
-- know it refuses it instead of resuming at full speed.
ALTER TABLE queue_command DROP CONSTRAINT queue_command_verb_check;
ALTER TABLE queue_command ADD CONSTRAINT queue_command_verb_check
    CHECK (verb IN ('SuspendQueue', 'ResumeQueue', 'ResumeQueueAtRate', 'RetryQueue',
                    'SuspendMessage', 'ResumeMessage', 'RemoveMessage'));
ALTER TABLE queue_command
    ADD COLUMN rate integer CHECK (rate BETWEEN 1 AND 10000);
