-- Why a bulk redelivery job stopped before its end (state 'stopped'): 'webhook_deleted' or
-- 'webhook_disabled'. NULL for a job that is running or completed.
ALTER TABLE redelivery_jobs ADD COLUMN stop_reason TEXT;
