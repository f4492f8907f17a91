-- Console sign-ins, kept in the database so that every node of the organisation and a restart
-- keep them. The cookie carries a random 256-bit id; only its SHA-256 is stored, so that reading
-- this table (a backup, a replica) does not hand out live sessions.
CREATE TABLE console_session (
    id_hash    bytea PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- The per-session token every state-changing request carries (form field or header).
    csrf       text NOT NULL,
    source     inet,
    created    timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_session_last_seen ON console_session (last_seen);
