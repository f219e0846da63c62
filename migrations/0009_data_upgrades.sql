-- Upgrades of stored data that Rust code does (it cannot be SQL), each run
-- to the end once and then recorded here, so that a start does not scan a
-- big table again to find nothing (issue 14). A node that finds its row
-- here skips the upgrade; two nodes that start together may both run it,
-- which each upgrade allows: it rewrites a row only if the row still holds
-- what the upgrade read, so a change made meanwhile is never undone.
CREATE TABLE data_upgrades (
    name TEXT PRIMARY KEY,
    done_at BIGINT NOT NULL
);
