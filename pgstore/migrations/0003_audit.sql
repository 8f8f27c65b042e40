-- The console's audit: one row per release, delete and download a console
-- user made, from any host. Rows outlive their entry on purpose (no
-- foreign key): after a full release or a delete the entry is gone, and
-- its audit is how an administrator learns who did it, when and where.
CREATE TABLE audit (
    seq       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- orders rows of one instant
    time      timestamptz NOT NULL,
    host      text        NOT NULL,            -- the foxproxy whose console acted
    username  text        NOT NULL,            -- the console account
    action    text        NOT NULL CHECK (action IN ('release', 'delete', 'download')),
    area      text        NOT NULL CHECK (area IN ('quarantine', 'held')),
    entry_id  text        NOT NULL,
    client    text        NOT NULL DEFAULT '', -- the console user's address
    result    text        NOT NULL,            -- ok, delivered, partial, failed
    detail    text        NOT NULL DEFAULT ''
);
-- An entry's page reads its rows in time order.
CREATE INDEX audit_entry ON audit (area, entry_id, time);
