-- Queue administration as commands to the queue manager, the one writer of queue state.
--
-- The shell or the console records a command here and NOTIFYs hubgate_queue_command; the running
-- gateway of `server` (it holds the queue writer's advisory lock while it runs) applies it to its
-- queues, writes the rows through its writer and records the result. When no gateway holds the
-- lock, whoever records the command takes the lock and applies it to the stored queue state,
-- which the gateway loads when it starts.
CREATE TABLE queue_command (
    id          bigserial PRIMARY KEY,
    server      text NOT NULL,
    verb        text NOT NULL CHECK (verb IN ('SuspendQueue', 'ResumeQueue', 'RetryQueue',
                                              'SuspendMessage', 'ResumeMessage', 'RemoveMessage')),
    -- As the administrator named it: HUB1\3, HUB1\*\17.
    identity    text NOT NULL,
    -- Queue commands: the delivery_queue row (NULL: Unreachable, whose row is not made yet).
    queue_id    bigint,
    -- Message commands: the message, and for Remove-Message its recipients in the named queue.
    message_id  uuid,
    ordinals    integer[] NOT NULL DEFAULT '{}',
    -- Retry-Queue: -Resubmit; Remove-Message: -WithNDR.
    flag        boolean NOT NULL DEFAULT false,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    -- Set once the command ran: by the running gateway ('Gateway') or on the stored state of a
    -- gateway that was not running ('Stored').
    done_at     timestamptz,
    applied_by  text CHECK (applied_by IN ('Gateway', 'Stored')),
    -- The error kind (QueueNotFound, NotInRetry, MessageNotFound, Failed) and its text.
    error       text,
    error_text  text,
    messages    integer,
    recipients  integer
);
CREATE INDEX queue_command_pending ON queue_command (server, id) WHERE done_at IS NULL;
