-- The receive bindings a node could not listen on at its last start or configuration change
-- (address in use, address not on this machine), so that Get-ReceiveConnector can show them on
-- the connectors they belong to. Written by the node only; no reload trigger, since nothing
-- here is configuration.
CREATE TABLE receive_binding_error (
    server   text NOT NULL REFERENCES transport_server (name) ON DELETE CASCADE,
    -- The socket the node tried, e.g. 0.0.0.0:25 (a wildcard stands for every connector bound
    -- to an address of its family on that port).
    address  text NOT NULL,
    error    text NOT NULL,
    since    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, address)
);
