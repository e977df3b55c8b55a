-- Events move out of this file into append-only files beside it (`<stem>-events/`, see
-- event_files.rs): each request row says where its event is. The history writer spent half the
-- CPU per request in a like-for-like simulation (docs/BENCHMARKS.md, tuning step 21). Rows
-- written before keep their event in `events`, where readers still look when these are empty.
ALTER TABLE requests ADD COLUMN event_seg BIGINT;
ALTER TABLE requests ADD COLUMN event_offset BIGINT;
ALTER TABLE requests ADD COLUMN event_len BIGINT;
