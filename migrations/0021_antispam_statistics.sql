-- The Anti-spam tab's per-agent counts: per node and minute, how many decisions each anti-spam
-- agent recorded in the message tracking log (source AGENT), by event (FAIL, DEFER, AGENTINFO).
-- Each node counts in memory where the tracking log is written and adds its counts to the
-- minute's rows once a minute and at shutdown; rows older than the node's
-- ServerStatisticsMaxAge are pruned, as server_statistics' are.
CREATE TABLE antispam_statistics (
    server  text NOT NULL REFERENCES transport_server (name) ON DELETE CASCADE ON UPDATE CASCADE,
    minute  timestamptz NOT NULL CHECK (date_trunc('minute', minute) = minute),
    agent   text NOT NULL,
    event   text NOT NULL CHECK (event IN ('FAIL', 'DEFER', 'AGENTINFO')),
    count   bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
    PRIMARY KEY (server, minute, agent, event)
);

-- The tab sums every node's rows of the last day.
CREATE INDEX antispam_statistics_minute ON antispam_statistics (minute);
