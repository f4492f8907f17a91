-- The server dashboard (Console III): per node and minute, the messages received, delivered,
-- deferred and failed, and the queue length at the end of the minute. Each node counts in
-- memory and writes its row once a minute (and at shutdown), adding to a row a restart in the
-- same minute left; rows older than the node's ServerStatisticsMaxAge are pruned.
CREATE TABLE server_statistics (
    server        text NOT NULL REFERENCES transport_server (name) ON DELETE CASCADE ON UPDATE CASCADE,
    minute        timestamptz NOT NULL CHECK (date_trunc('minute', minute) = minute),
    received      bigint NOT NULL DEFAULT 0 CHECK (received >= 0),
    delivered     bigint NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    deferred      bigint NOT NULL DEFAULT 0 CHECK (deferred >= 0),
    failed        bigint NOT NULL DEFAULT 0 CHECK (failed >= 0),
    queue_length  bigint NOT NULL DEFAULT 0 CHECK (queue_length >= 0),
    PRIMARY KEY (server, minute)
);

-- hubgate's own setting (Exchange kept performance counters, not a table): how long a node keeps
-- its rows, in seconds (Set-TransportServer -ServerStatisticsMaxAge 7.00:00:00).
ALTER TABLE transport_server
    ADD COLUMN server_statistics_max_age bigint NOT NULL DEFAULT 604800
        CHECK (server_statistics_max_age BETWEEN 3600 AND 31536000);
