DROP INDEX events_by_created_at;
