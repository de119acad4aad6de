UPDATE redelivery_jobs SET state = 'completed' WHERE state = 'stopped';
ALTER TABLE redelivery_jobs DROP COLUMN stop_reason;
