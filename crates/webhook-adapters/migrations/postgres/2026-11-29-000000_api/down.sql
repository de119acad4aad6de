DROP INDEX deliveries_exhausted_by_webhook;
DROP TABLE redelivery_jobs;
DROP TABLE admin_token;
DROP TABLE entities;
