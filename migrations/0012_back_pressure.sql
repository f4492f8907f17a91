-- Back pressure (Operate, #16): hubgate's own Set-TransportServer settings for what Exchange
-- kept in EdgeTransport.exe.config. New mail is refused (452 4.3.1) while this node holds
-- BackPressureQueueLengthLimit messages or more (NULL: Unlimited), or while the spool's disk has
-- less than BackPressureDiskFreeSpaceLimit bytes free (0: no limit; the default is 500 MB).
ALTER TABLE transport_server
    ADD COLUMN back_pressure_queue_length_limit integer
        CHECK (back_pressure_queue_length_limit IS NULL OR back_pressure_queue_length_limit >= 1),
    ADD COLUMN back_pressure_disk_free_space_limit bigint NOT NULL DEFAULT 524288000
        CHECK (back_pressure_disk_free_space_limit >= 0);
