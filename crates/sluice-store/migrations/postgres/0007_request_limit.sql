-- The largest request body a channel forwards (NULL: no limit); a larger one is answered 413.
ALTER TABLE channels ADD COLUMN max_request_bytes BIGINT;
