package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/quarantine"
)

const (
	areaQuarantine = "quarantine"
	areaHeld       = "held"
)

// ChunkSize is how much of a message one row of entry_chunks holds: a
// custody write keeps about two chunks in memory, an open message at most
// cachedChunks, whatever the message's size.
const ChunkSize = 256 << 10

// Store is one area of the custody database: the quarantine or the held
// area. It implements quarantine.Store.
type Store struct {
	db   *DB
	area string
	// chunkSize is ChunkSize; tests make it small.
	chunkSize int
}

var _ quarantine.Store = (*Store)(nil)

// Describe names the database (without its password) and the area.
func (s *Store) Describe() string { return s.db.redacted + " (" + s.area + ")" }

// Held is the held area of the same database.
func (s *Store) Held() (quarantine.Store, error) { return s.db.HeldArea(), nil }

// HeldView is the held area (the database creates nothing on reading).
func (s *Store) HeldView() quarantine.Store { return s.db.HeldArea() }

func (s *Store) chunk() int {
	if s.chunkSize > 0 {
		return s.chunkSize
	}
	return ChunkSize
}

// Put stores a message under a new ID.
func (s *Store) Put(ctx context.Context, e quarantine.Entry, content io.Reader) (string, error) {
	for {
		e.ID = quarantine.NewID(time.Now())
		err := s.put(ctx, e, content, nil)
		if !errors.Is(err, quarantine.ErrExists) {
			if err != nil {
				return "", err
			}
			return e.ID, nil
		}
		// 32 random bits collided within a second: draw again. Nothing
		// was read from content (the row is inserted first).
	}
}

// PutAs stores a message under a given ID, or returns ErrExists.
func (s *Store) PutAs(ctx context.Context, id string, e quarantine.Entry, content io.Reader) error {
	if !quarantine.ValidID(id) {
		return fmt.Errorf("quarantine: bad ID %q", id)
	}
	e.ID = id
	return s.put(ctx, e, content, nil)
}

// Import stores an entry moved in from another store (foxproxy quarantine
// import of a file store) under its own ID, with its metadata as it is
// (time, partial releases). A claim that is no longer running (an
// interrupted release, or one that may have delivered the message) comes
// along in the same transaction, lapsed and with its uncertainty, so that
// the entry waits for an administrator here as it did there; a running
// claim is the caller's to refuse. It returns ErrExists, writing nothing,
// when the area has the ID already.
func (s *Store) Import(ctx context.Context, e quarantine.Entry, content io.Reader, claim *quarantine.ClaimedError) error {
	if !quarantine.ValidID(e.ID) {
		return fmt.Errorf("quarantine: bad ID %q", e.ID)
	}
	if claim != nil && claim.Running && claim.Uncertain == "" {
		return fmt.Errorf("pgstore: %s: a release is in progress (process %d); import it when it has ended", e.ID, claim.PID)
	}
	var after func(ctx context.Context, tx pgx.Tx) error
	if claim != nil {
		after = func(ctx context.Context, tx pgx.Tx) error {
			var at *time.Time
			if !claim.Time.IsZero() {
				at = &claim.Time
			}
			_, err := tx.Exec(ctx, `UPDATE entries SET claim_token = $3, claim_host = $4, claim_pid = $5,
					claim_time = coalesce($6, now()), claim_expires = now(), sending = false, uncertain = $7
				WHERE area = $1 AND id = $2`,
				s.area, e.ID, rand.Text(), s.db.opts.Host, int32(claim.PID), at, claim.Uncertain)
			return s.db.fail(err)
		}
	}
	return s.put(ctx, e, content, after)
}

// put writes the entry row and then the content, chunk by chunk with
// COPY, in one transaction: readers see the whole entry or nothing. after,
// when not nil, runs in the same transaction last.
func (s *Store) put(ctx context.Context, e quarantine.Entry, content io.Reader, after func(ctx context.Context, tx pgx.Tx) error) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	r, err := rowOf(e)
	if err != nil {
		return err
	}
	var arrived *time.Time
	if !e.Arrived.IsZero() {
		arrived = &e.Arrived
	}
	return s.db.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO entries (area, id, host, time, arrived, sender, rcpts, client, queue_id,
				size, chunk_size, rule, reason, meta)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT (area, id) DO NOTHING`,
			s.area, e.ID, s.db.opts.Host, e.Time, arrived, r.sender, r.rcpts, r.client, r.queueID,
			e.Size, s.chunk(), r.rule, r.reason, r.meta)
		if err != nil {
			return s.db.fail(err)
		}
		if tag.RowsAffected() == 0 {
			return quarantine.ErrExists
		}
		src := &chunkSource{area: s.area, id: e.ID, r: content, buf: make([]byte, s.chunk())}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entry_chunks"}, []string{"area", "entry_id", "seq", "data"}, src); err != nil {
			if src.err != nil {
				return fmt.Errorf("pgstore: reading the message: %w", src.err)
			}
			return s.db.fail(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE entries SET content_size = $3 WHERE area = $1 AND id = $2", s.area, e.ID, src.total); err != nil {
			return s.db.fail(err)
		}
		if after != nil {
			return after(ctx, tx)
		}
		return nil
	})
}

// entryRow is an entry as the columns of its row hold it: meta, the whole
// entry as JSON, and the columns that search and list it. PostgreSQL takes
// text only as valid UTF-8, and an envelope from a client that did not ask
// for SMTPUTF8 may have 8-bit bytes: refused, its custody write would fail
// at every retry. Each column keeps what meta keeps of its value
// (encoding/json writes U+FFFD for each invalid byte), as the file store's
// JSON does.
type entryRow struct {
	meta                                  []byte
	sender, client, queueID, rule, reason string
	rcpts                                 []string
}

func rowOf(e quarantine.Entry) (entryRow, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return entryRow{}, fmt.Errorf("pgstore: %w", err)
	}
	rcpts := make([]string, len(e.Rcpts)) // never nil: the column is NOT NULL
	for i, a := range e.Rcpts {
		rcpts[i] = validText(a)
	}
	return entryRow{meta: meta, sender: validText(e.From), client: validText(e.Client), queueID: validText(e.QueueID),
		rule: validText(e.Rule), reason: validText(e.Reason), rcpts: rcpts}, nil
}

// validText is s with each byte that is not UTF-8 replaced by U+FFFD, as
// encoding/json does; s itself, without a copy, when it is valid.
func validText(s string) string { return strings.Map(func(r rune) rune { return r }, s) }

// chunkSource feeds COPY one chunk of the message at a time; pgx encodes
// each row before it asks for the next, so one buffer serves them all.
type chunkSource struct {
	area, id string
	r        io.Reader
	buf      []byte
	n        int
	seq      int
	total    int64
	done     bool
	err      error
}

func (c *chunkSource) Next() bool {
	if c.done {
		return false
	}
	n, err := io.ReadFull(c.r, c.buf)
	c.n = n
	c.total += int64(n)
	switch {
	case err == io.EOF:
		c.done = true
		return false
	case err == io.ErrUnexpectedEOF:
		c.done = true // the last, shorter chunk
	case err != nil:
		c.err, c.done = err, true
		return false
	}
	c.seq++
	return true
}

func (c *chunkSource) Values() ([]any, error) {
	return []any{c.area, c.id, c.seq - 1, c.buf[:c.n]}, nil
}

func (c *chunkSource) Err() error { return c.err }

// Get returns an entry's metadata.
func (s *Store) Get(ctx context.Context, id string) (quarantine.Entry, error) {
	if !quarantine.ValidID(id) {
		return quarantine.Entry{}, quarantine.ErrNotFound
	}
	var e quarantine.Entry
	err := s.query(ctx, func(ctx context.Context) error {
		var meta []byte
		err := s.db.pool.QueryRow(ctx, "SELECT meta FROM entries WHERE area = $1 AND id = $2", s.area, id).Scan(&meta)
		if errors.Is(err, pgx.ErrNoRows) {
			return quarantine.ErrNotFound
		}
		if err != nil {
			return s.db.fail(err)
		}
		if err := json.Unmarshal(meta, &e); err != nil {
			return fmt.Errorf("pgstore: entry %s: %w", id, err)
		}
		return nil
	})
	return e, err
}

// query runs f bounded by the timeout, after the schema check.
func (s *Store) query(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	if err := s.db.ready(ctx); err != nil {
		return err
	}
	return f(ctx)
}

// List returns every entry of the area, oldest first.
func (s *Store) List(ctx context.Context) ([]quarantine.Entry, error) {
	var out []quarantine.Entry
	err := s.query(ctx, func(ctx context.Context) error {
		rows, err := s.db.pool.Query(ctx, "SELECT id, meta FROM entries WHERE area = $1 ORDER BY time, id", s.area)
		if err != nil {
			return s.db.fail(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var meta []byte
			if err := rows.Scan(&id, &meta); err != nil {
				return s.db.fail(err)
			}
			var e quarantine.Entry
			if json.Unmarshal(meta, &e) != nil {
				continue // as the file store skips an unreadable entry
			}
			out = append(out, e)
		}
		return s.db.fail(rows.Err())
	})
	return out, err
}

// Delete removes an entry and its content.
func (s *Store) Delete(ctx context.Context, id string) error {
	if !quarantine.ValidID(id) {
		return quarantine.ErrNotFound
	}
	return s.query(ctx, func(ctx context.Context) error {
		tag, err := s.db.pool.Exec(ctx, "DELETE FROM entries WHERE area = $1 AND id = $2", s.area, id)
		if err != nil {
			return s.db.fail(err)
		}
		if tag.RowsAffected() == 0 {
			return quarantine.ErrNotFound
		}
		return nil
	})
}

// Update replaces an entry's metadata (after a partial release).
func (s *Store) Update(ctx context.Context, e quarantine.Entry) error {
	r, err := rowOf(e)
	if err != nil {
		return err
	}
	return s.query(ctx, func(ctx context.Context) error {
		tag, err := s.db.pool.Exec(ctx, `UPDATE entries SET meta = $3, rcpts = $4, rule = $5, reason = $6
			WHERE area = $1 AND id = $2`, s.area, e.ID, r.meta, r.rcpts, r.rule, r.reason)
		if err != nil {
			return s.db.fail(err)
		}
		if tag.RowsAffected() == 0 {
			return quarantine.ErrNotFound
		}
		return nil
	})
}

// purgeBatch is how many entries one statement of Purge deletes, so that
// each stays well within the timeout however much is due.
const purgeBatch = 100

// Purge deletes entries older than age. One host at a time purges (an
// advisory lock); the others return 0 at once. An entry whose claim is
// live (a release in progress) or uncertain stays.
func (s *Store) Purge(ctx context.Context, age time.Duration) (int, error) {
	if err := s.query(ctx, func(context.Context) error { return nil }); err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-age)
	actx, cancel := s.db.bound(ctx)
	conn, err := s.db.pool.Acquire(actx)
	cancel()
	if err != nil {
		return 0, s.db.fail(err)
	}
	defer conn.Release()
	var got bool
	lctx, cancel := s.db.bound(ctx)
	err = conn.QueryRow(lctx, "SELECT pg_try_advisory_lock($1)", lockPurge).Scan(&got)
	cancel()
	if err != nil {
		return 0, s.db.fail(err)
	}
	if !got {
		return 0, nil // another host purges now
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockPurge); err != nil {
			conn.Conn().Close(uctx) // a session lock dies with its session
		}
	}()
	n := 0
	for {
		dctx, cancel := s.db.bound(ctx)
		tag, err := conn.Exec(dctx, `DELETE FROM entries WHERE (area, id) IN (
				SELECT area, id FROM entries WHERE area = $1 AND time < $2
				AND (claim_token IS NULL OR (claim_expires < now() AND NOT sending AND uncertain = ''))
				LIMIT $3)`, s.area, cutoff, purgeBatch)
		cancel()
		if err != nil {
			return n, s.db.fail(err)
		}
		n += int(tag.RowsAffected())
		if tag.RowsAffected() < purgeBatch {
			return n, nil
		}
	}
}

// Tidy has nothing to do: a write is one transaction, so an interrupted
// one leaves nothing behind.
func (s *Store) Tidy(context.Context) error { return nil }

// Has reports whether an entry exists.
func (s *Store) Has(ctx context.Context, id string) (bool, error) {
	if !quarantine.ValidID(id) {
		return false, nil
	}
	var ok bool
	err := s.query(ctx, func(ctx context.Context) error {
		return s.db.fail(s.db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM entries WHERE area = $1 AND id = $2)", s.area, id).Scan(&ok))
	})
	return ok, err
}

// Stats counts the entries and returns the oldest one's time (its arrival,
// for held mail).
func (s *Store) Stats(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	err := s.query(ctx, func(ctx context.Context) error {
		return s.db.fail(s.db.pool.QueryRow(ctx, "SELECT count(*), min(coalesce(arrived, time)) FROM entries WHERE area = $1", s.area).Scan(&n, &oldest))
	})
	if err != nil || oldest == nil {
		return n, time.Time{}, err
	}
	return n, oldest.UTC(), nil
}
