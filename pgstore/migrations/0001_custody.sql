-- Custody: quarantined and held messages, shared by every foxproxy that
-- points at this database. An entry and its chunks are written in one
-- transaction, so a crash leaves a whole entry or none.
CREATE TABLE entries (
    area           text        NOT NULL CHECK (area IN ('quarantine', 'held')),
    id             text        NOT NULL,
    host           text        NOT NULL,            -- the foxproxy that stored it
    stored         timestamptz NOT NULL DEFAULT now(),
    time           timestamptz NOT NULL,            -- Entry.Time: the verdict
    arrived        timestamptz,                     -- Entry.Arrived: held mail only
    sender         text        NOT NULL,
    rcpts          text[]      NOT NULL,
    client         text        NOT NULL DEFAULT '',
    queue_id       text        NOT NULL DEFAULT '',
    size           bigint      NOT NULL,            -- Entry.Size: as received
    content_size   bigint      NOT NULL DEFAULT 0,  -- bytes in entry_chunks
    chunk_size     integer     NOT NULL,            -- every chunk but the last has this size
    rule           text        NOT NULL DEFAULT '',
    reason         text        NOT NULL DEFAULT '',
    meta           jsonb       NOT NULL,            -- the whole quarantine.Entry
    -- The claim of a release or rescan: claim_token names the claim,
    -- claim_expires is its lease. A claim past its lease is no longer
    -- running; one that was sending is uncertain and never taken over
    -- without --force.
    claim_token    text,
    claim_host     text,
    claim_pid      integer,
    claim_time     timestamptz,
    claim_expires  timestamptz,
    sending        boolean     NOT NULL DEFAULT false,
    uncertain      text        NOT NULL DEFAULT '',
    PRIMARY KEY (area, id)
);
-- The searches an administrator makes, and retention.
CREATE INDEX entries_time ON entries (area, time);
CREATE INDEX entries_arrival ON entries (area, (coalesce(arrived, time)));
CREATE INDEX entries_sender ON entries (lower(sender));
CREATE INDEX entries_rcpts ON entries USING gin (rcpts);
CREATE INDEX entries_client ON entries (client);
CREATE INDEX entries_queue_id ON entries (queue_id);

CREATE TABLE entry_chunks (
    area      text    NOT NULL,
    entry_id  text    NOT NULL,
    seq       integer NOT NULL,
    data      bytea   NOT NULL,
    PRIMARY KEY (area, entry_id, seq),
    FOREIGN KEY (area, entry_id) REFERENCES entries (area, id) ON DELETE CASCADE
);
-- Out of line and not compressed: most mail is base64 or compressed
-- already, and compressing every chunk would cost each custody write.
ALTER TABLE entry_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
