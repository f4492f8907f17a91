-- Secrets the gateway must replay (the smart-host password of a send connector) are sealed with
-- the organisation key (AES-256-GCM), so that a database dump does not reveal them. The key is
-- never stored here: every node is given it (file or environment variable).

-- One sealed known text: tells a node at start whether its key is the organisation's, before
-- any secret exists that it could try.
CREATE TABLE organization_key_check (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    verifier  text NOT NULL,
    created   timestamptz NOT NULL DEFAULT now()
);

-- Passwords stored until now are plaintext: mark them, and the next start (or a shell that has
-- the key) seals them. Nothing else may be stored in the column.
UPDATE send_connector SET auth_password = 'plain:' || auth_password WHERE auth_password IS NOT NULL;
ALTER TABLE send_connector ADD CONSTRAINT send_connector_auth_password_sealed
    CHECK (auth_password IS NULL OR auth_password LIKE 'hgv1:%' OR auth_password LIKE 'plain:%');
COMMENT ON COLUMN send_connector.auth_password IS
    'hgv1:<base64 of nonce and ciphertext>, sealed with the organisation key; plain:<text> only until the next start seals it';
