-- Set-TransportServer's log settings, with Exchange 2010's defaults: the protocol logs and the
-- message tracking log start a new file at MaxFileSize and lose their oldest files past
-- MaxDirectorySize and MaxAge. Sizes in bytes (NULL: unlimited), ages in seconds (0: files are
-- never removed by age, Exchange's 00:00:00).
ALTER TABLE transport_server
    ADD COLUMN receive_protocol_log_max_file_size bigint DEFAULT 10485760
        CHECK (receive_protocol_log_max_file_size > 0),
    ADD COLUMN receive_protocol_log_max_directory_size bigint DEFAULT 262144000
        CHECK (receive_protocol_log_max_directory_size > 0),
    ADD COLUMN receive_protocol_log_max_age bigint NOT NULL DEFAULT 2592000
        CHECK (receive_protocol_log_max_age >= 0),
    ADD COLUMN send_protocol_log_max_file_size bigint DEFAULT 10485760
        CHECK (send_protocol_log_max_file_size > 0),
    ADD COLUMN send_protocol_log_max_directory_size bigint DEFAULT 262144000
        CHECK (send_protocol_log_max_directory_size > 0),
    ADD COLUMN send_protocol_log_max_age bigint NOT NULL DEFAULT 2592000
        CHECK (send_protocol_log_max_age >= 0),
    ADD COLUMN message_tracking_log_max_file_size bigint DEFAULT 10485760
        CHECK (message_tracking_log_max_file_size > 0),
    ADD COLUMN message_tracking_log_max_directory_size bigint DEFAULT 1073741824
        CHECK (message_tracking_log_max_directory_size > 0),
    ADD COLUMN message_tracking_log_max_age bigint NOT NULL DEFAULT 2592000
        CHECK (message_tracking_log_max_age >= 0);
