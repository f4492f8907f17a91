-- The Connection Filtering agent's IP Allow List and IP Block List, organisation-wide. Each entry
-- is an inclusive range of one address family (a single address has low = high); `ip_range` is
-- the text Get-IP*ListEntry shows. Identity is the integer Exchange shows.
CREATE TABLE ip_list_entry (
    id              bigserial PRIMARY KEY,
    list            text NOT NULL CHECK (list IN ('Allow', 'Block')),
    ip_range        text NOT NULL,
    low             text NOT NULL,
    high            text NOT NULL,
    expiration_time timestamptz,
    comment         text
);

CREATE TRIGGER ip_list_entry_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ip_list_entry
    FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();
