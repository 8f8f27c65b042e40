package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/quarantine"
)

// AuditRow is one release, delete or download a console user made on an
// entry of the database, from whichever host's console. Rows are kept
// after their entry is gone: they are how an administrator finds who
// released or deleted it.
type AuditRow struct {
	Time time.Time
	// Host is the foxproxy whose console acted (its hostname).
	Host string
	// User is the console account.
	User string
	// Action is release, delete or download.
	Action string
	// EntryID is the entry acted on; the Store's area is the row's area.
	EntryID string
	// Client is the console user's address.
	Client string
	// Result is a word (ok, delivered, partial, failed), Detail the rest.
	Result, Detail string
}

// Bounds of an audit row's fields: the console passes an ID from a URL
// and error texts from a downstream, and a row stays small whatever
// they were.
const (
	maxAuditShort  = 256  // host, user, action, entry, client, result
	maxAuditDetail = 4096 // detail
	// maxAuditRows bounds the rows AuditTrail returns: an entry released
	// and downloaded that often is a script's, and its newest rows are
	// the ones that matter.
	maxAuditRows = 1000
)

// auditActions are the actions the audit table accepts (its CHECK).
var auditActions = map[string]bool{"release": true, "delete": true, "download": true}

// RecordAudit adds r to the audit table, durably (synchronous commit, as
// every write of this package), in the Store's area.
func (s *Store) RecordAudit(ctx context.Context, r AuditRow) error {
	if !auditActions[r.Action] {
		return fmt.Errorf("pgstore: audit: action %q is not one of release, delete, download", r.Action)
	}
	if r.User == "" {
		return fmt.Errorf("pgstore: audit: no user")
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if r.Host == "" {
		r.Host = s.db.opts.Host
	}
	return s.query(ctx, func(ctx context.Context) error {
		_, err := s.db.pool.Exec(ctx, `INSERT INTO audit (time, host, username, action, area, entry_id, client, result, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			r.Time.UTC(), clip(r.Host, maxAuditShort), clip(r.User, maxAuditShort), r.Action, s.area,
			clip(r.EntryID, maxAuditShort), clip(r.Client, maxAuditShort), clip(r.Result, maxAuditShort),
			clip(r.Detail, maxAuditDetail))
		return s.db.fail(err)
	})
}

// AuditTrail returns an entry's audit rows, oldest first (at most the
// newest maxAuditRows), whether or not the entry is still there.
func (s *Store) AuditTrail(ctx context.Context, id string) ([]AuditRow, error) {
	var out []AuditRow
	err := s.query(ctx, func(ctx context.Context) error {
		rows, err := s.db.pool.Query(ctx, `SELECT time, host, username, action, entry_id, client, result, detail FROM (
				SELECT * FROM audit WHERE area = $1 AND entry_id = $2 ORDER BY time DESC, seq DESC LIMIT $3
			) newest ORDER BY time, seq`, s.area, id, maxAuditRows)
		if err != nil {
			return s.db.fail(err)
		}
		defer rows.Close()
		for rows.Next() {
			var r AuditRow
			if err := rows.Scan(&r.Time, &r.Host, &r.User, &r.Action, &r.EntryID, &r.Client, &r.Result, &r.Detail); err != nil {
				return s.db.fail(err)
			}
			r.Time = r.Time.UTC()
			out = append(out, r)
		}
		return s.db.fail(rows.Err())
	})
	return out, err
}

// StoredBy returns the host that stored an entry (quarantine.ErrNotFound
// when there is no such entry).
func (s *Store) StoredBy(ctx context.Context, id string) (string, error) {
	var host string
	err := s.query(ctx, func(ctx context.Context) error {
		err := s.db.pool.QueryRow(ctx, "SELECT host FROM entries WHERE area = $1 AND id = $2", s.area, id).Scan(&host)
		if errors.Is(err, pgx.ErrNoRows) {
			return quarantine.ErrNotFound
		}
		return s.db.fail(err)
	})
	return host, err
}

// clip makes s storable in a text column (valid UTF-8 without NUL, which
// PostgreSQL refuses) of at most n bytes, marking a cut.
func clip(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	// A cut inside a rune leaves a fragment that ToValidUTF8 drops.
	return strings.ToValidUTF8(s[:n-len("…")], "") + "…"
}
