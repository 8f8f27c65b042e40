package msglog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the package needs of PostgreSQL: *pgxpool.Pool (and *pgx.Conn)
// has it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// The message log's table and indexes are pgstore's migration
// 0002_message_log.sql, the one copy of its DDL: the daemon applies it
// with the custody's schema, and this package's tests through pgstore
// too. It creates no partition: EnsurePartitions and the Writer do, by
// date.
//
// Partitions are by day of UTC time (message_log_pYYYYMMDD), so retention
// drops whole tables instead of deleting rows. There is no DEFAULT
// partition: a row's day gets its partition when it is written (the
// Writer's copy), because a default partition that held rows of a day
// would block creating that day's partition ever after, and would never be
// dropped by retention.
//
// Indexes are on the parent, so every partition gets them; each serves a
// search of Search (the time-ordered primary key serves the time range and
// the pagination, and is the second column where a search also orders by
// it): lower(sender), the lowercased recipients (GIN, for rcpts_lc @>
// ARRAY[...]), client, both queue IDs, Message-ID and foxproxy's ID.

// Advisory lock keys (pg_advisory_xact_lock's bigint space is shared by
// every user of the database: other packages must pick other keys). They
// are "fxmlog" and a number in ASCII.
const (
	// RetentionLockKey is held while one host drops old partitions.
	RetentionLockKey int64 = 0x66786d6c6f6701
	// PartitionLockKey serializes creating partitions, which two hosts
	// may try at once for the same day.
	PartitionLockKey int64 = 0x66786d6c6f6702
)

// ddlLockTimeout bounds the wait for the parent table's lock that
// creating or dropping a partition takes; a COPY or search in progress
// holds it up, and a maintenance that cannot have it now tries again
// later.
const ddlLockTimeout = "2s"

// upcomingDays are today and the next two days (UTC): created ahead so
// that the first messages of a day never wait for DDL.
func upcomingDays(now time.Time) []time.Time {
	d := dayOf(now)
	return []time.Time{d, d.AddDate(0, 0, 1), d.AddDate(0, 0, 2)}
}

func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// PartitionName is the name of the partition holding day's rows.
func PartitionName(day time.Time) string {
	return "message_log_p" + dayOf(day).Format("20060102")
}

var partitionName = regexp.MustCompile(`^message_log_p([0-9]{8})$`)

// rollbackWait bounds a rollback, which runs even when ctx is done.
const rollbackWait = 5 * time.Second

// rollback ends tx if it was not committed (a no-op after a commit), also
// when ctx is done, yet bounded: after a failure the connection may be one
// that no longer answers, and an unbounded wait there would hold the
// writer (and its Close) for as long as TCP takes to notice.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	tx.Rollback(ctx)
}

// EnsurePartitions creates the partitions of days (any time of the day)
// that do not exist yet.
func EnsurePartitions(ctx context.Context, db DB, days ...time.Time) error {
	if len(days) == 0 {
		return nil
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("message log partitions: %w", err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+ddlLockTimeout+"'"); err != nil {
		return fmt.Errorf("message log partitions: %w", err)
	}
	// Without the lock, two hosts creating the same day race past IF
	// NOT EXISTS: one fails with "relation ... already exists" (42P07),
	// as TestRetentionRunsOnOneHost saw.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", PartitionLockKey); err != nil {
		return fmt.Errorf("message log partitions: %w", err)
	}
	for _, d := range days {
		d = dayOf(d)
		// DDL takes no parameters; the name and bounds come from a
		// time.Time, never from input.
		sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF message_log FOR VALUES FROM ('%s') TO ('%s')",
			PartitionName(d), d.Format(time.RFC3339), d.AddDate(0, 0, 1).Format(time.RFC3339))
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("message log partition %s: %w", PartitionName(d), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("message log partitions: %w", err)
	}
	return nil
}

// Partitions lists the days that have a partition, oldest first.
func Partitions(ctx context.Context, db DB) ([]time.Time, error) {
	rows, err := db.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'message_log'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("message log partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("message log partitions: %w", err)
	}
	var days []time.Time
	for _, n := range names {
		m := partitionName.FindStringSubmatch(n)
		if m == nil {
			continue // not ours: leave it alone
		}
		d, err := time.Parse("20060102", m[1])
		if err != nil {
			continue
		}
		days = append(days, d)
	}
	sort.Slice(days, func(i, j int) bool { return days[i].Before(days[j]) })
	return days, nil
}

// ErrRetentionBusy: another host holds the retention lock and is doing
// the work.
var ErrRetentionBusy = errors.New("message log retention is running on another host")

// DropExpired drops the partitions whose every row is older than
// now-retention (a day is dropped once its end has passed that point), on
// one host at a time: if another holds RetentionLockKey it returns
// ErrRetentionBusy and changes nothing. It returns the days dropped.
func DropExpired(ctx context.Context, db DB, now time.Time, retention time.Duration) ([]time.Time, error) {
	if retention <= 0 {
		return nil, errors.New("message log retention must be positive")
	}
	cutoff := now.Add(-retention)
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("message log retention: %w", err)
	}
	defer rollback(ctx, tx)
	// A transaction-level lock: it goes with the transaction however
	// that ends, a lost connection included.
	var got bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", RetentionLockKey).Scan(&got); err != nil {
		return nil, fmt.Errorf("message log retention: %w", err)
	}
	if !got {
		return nil, ErrRetentionBusy
	}
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+ddlLockTimeout+"'"); err != nil {
		return nil, fmt.Errorf("message log retention: %w", err)
	}
	days, err := Partitions(ctx, tx)
	if err != nil {
		return nil, err
	}
	var dropped []time.Time
	for _, d := range days {
		if d.AddDate(0, 0, 1).After(cutoff) {
			break // sorted: every later day has rows to keep
		}
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+PartitionName(d)); err != nil {
			return nil, fmt.Errorf("message log retention: drop %s: %w", PartitionName(d), err)
		}
		dropped = append(dropped, d)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("message log retention: %w", err)
	}
	return dropped, nil
}
