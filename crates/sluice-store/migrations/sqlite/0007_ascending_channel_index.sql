-- The channel listing index in ascending order. Rows arrive in time order, so an ascending
-- index only ever grows at its right edge, where SQLite splits pages full; in descending order
-- each new row went to the left edge of its channel's range, leaving pages half full: the file
-- grew ~15% more per request and each commit wrote more index pages to the WAL (the `history`
-- simulation, docs/BENCHMARKS.md tuning step 27). `ORDER BY started_at DESC, id DESC` reads
-- the ascending index backwards, with the same plan.
DROP INDEX requests_channel_started;
CREATE INDEX requests_channel_started ON requests (channel_id, started_at, id);
