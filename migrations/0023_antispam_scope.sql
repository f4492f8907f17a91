-- The imported valid recipients are held in memory by every gateway (no query per RCPT): a
-- change of the list is notified like any configuration change, and each node reloads it. One
-- notification per statement, so an Import-ValidRecipient of many addresses reloads once.
CREATE TRIGGER valid_recipient_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON valid_recipient FOR EACH STATEMENT EXECUTE FUNCTION hubgate_notify_config();

-- Which sessions the Sender Filter and Recipient Filter agents act on, as in Exchange:
-- ExternalMailEnabled the anonymous (external) ones, InternalMailEnabled the authenticated
-- (internal) ones. Exchange's defaults.
ALTER TABLE sender_filter_config
    ADD COLUMN external_mail_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN internal_mail_enabled boolean NOT NULL DEFAULT false;
ALTER TABLE recipient_filter_config
    ADD COLUMN internal_mail_enabled boolean NOT NULL DEFAULT false;
