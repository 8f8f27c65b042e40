-- The message log (package msglog): one row per message, partitioned by
-- day. This file is msglog.Migration, byte for byte after these comment
-- lines (TestMessageLogMigrationIsMsglogs); partitions are created by the
-- writer and its maintenance, not here.

CREATE SEQUENCE IF NOT EXISTS message_log_id_seq;
CREATE TABLE IF NOT EXISTS message_log (
	id                  bigint      NOT NULL DEFAULT nextval('message_log_id_seq'),
	time                timestamptz NOT NULL,
	host                text        NOT NULL,
	msg_id              text        NOT NULL,
	queue_id            text        NOT NULL DEFAULT '',
	downstream_queue_id text        NOT NULL DEFAULT '',
	message_id          text        NOT NULL DEFAULT '',
	client              inet,
	client_name         text        NOT NULL DEFAULT '',
	helo                text        NOT NULL DEFAULT '',
	sender              text        NOT NULL,
	rcpts               text[]      NOT NULL,
	rcpts_lc            text[]      NOT NULL,
	size                bigint      NOT NULL DEFAULT 0,
	stages              jsonb       NOT NULL DEFAULT '[]',
	verdict             text        NOT NULL,
	rule                text        NOT NULL DEFAULT '',
	reply_code          integer     NOT NULL DEFAULT 0,
	reply_text          text        NOT NULL DEFAULT '',
	quarantine_id       text        NOT NULL DEFAULT '',
	PRIMARY KEY (time, id)
) PARTITION BY RANGE (time);
ALTER SEQUENCE message_log_id_seq OWNED BY message_log.id;
CREATE INDEX IF NOT EXISTS message_log_sender_idx ON message_log (lower(sender), time);
CREATE INDEX IF NOT EXISTS message_log_rcpts_idx ON message_log USING gin (rcpts_lc);
CREATE INDEX IF NOT EXISTS message_log_client_idx ON message_log (client, time);
CREATE INDEX IF NOT EXISTS message_log_queue_id_idx ON message_log (queue_id) WHERE queue_id <> '';
CREATE INDEX IF NOT EXISTS message_log_downstream_queue_id_idx ON message_log (downstream_queue_id) WHERE downstream_queue_id <> '';
CREATE INDEX IF NOT EXISTS message_log_message_id_idx ON message_log (message_id) WHERE message_id <> '';
CREATE INDEX IF NOT EXISTS message_log_msg_id_idx ON message_log (msg_id);
