-- The queue's tables change fast: each delivery row is written three times (inserted, claimed,
-- given its outcome), and none of its updates can be HOT (the claim index holds the due time,
-- which both updates change). PostgreSQL's defaults vacuum a table once a fifth of it is dead,
-- which on a large history lets dead rows and bloat grow for a long time. These tables are
-- vacuumed and analysed once a hundredth of them has changed, insert-only ones too (so that
-- index-only scans see an up-to-date visibility map). Only what autovacuum does changes:
-- on a server with autovacuum off they have no effect.
ALTER TABLE deliveries SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE events SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE attempts SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
