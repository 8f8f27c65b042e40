// Package pgstore keeps foxproxy's custody (the quarantine and the held
// area, package quarantine's Store) in PostgreSQL, so that every foxproxy
// pointing at one database shares it: an entry stored on one MX host is
// listed, released or rescanned from any other, and a host's lost disk
// loses no acknowledged mail.
//
// Durability: every connection runs with synchronous_commit on, whatever
// the server's default, so a commit returns only once the WAL is flushed
// (and, with synchronous replication configured, replicated). A custody
// write is one transaction: the entry row and the message's chunks,
// written with COPY one chunk at a time, commit together or not at all.
// Every operation is bounded by Config.Timeout; an error is the caller's
// cue to answer 4xx (the proxy) or to retry later (the rescan).
//
// Claims carry a lease (Config.ClaimLease), renewed while the claimer
// works: a host that dies loses its claims after the lease, and another
// host takes the work over, except where the dead host had begun to send
// a message; that entry "may have been delivered" and waits for an
// administrator, as in the file store.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the schema's versions, in order: NNNN_name.sql.
var migrations = func() []migration {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		v, err := strconv.Atoi(base[:4])
		if err != nil {
			panic("pgstore: migration without a version: " + n)
		}
		b, _ := migrationFiles.ReadFile(n)
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			panic("pgstore: migrations must be numbered 0001, 0002, ... without gaps")
		}
	}
	return ms
}()

// SchemaVersion is the newest schema this binary knows.
var SchemaVersion = len(migrations)

// ErrSchemaTooNew is returned when the database's schema is newer than
// this binary knows: a newer foxproxy migrated it.
var ErrSchemaTooNew = errors.New("pgstore: the database's schema is newer than this foxproxy knows")

// ErrSchemaOld is returned by a DB opened without migrating when the
// schema is older than this binary needs.
var ErrSchemaOld = errors.New("pgstore: the database's schema is older than this foxproxy needs")

// Advisory lock keys (pg_advisory_lock), one per kind of work that only
// one host at a time may do.
const (
	lockMigrate = 0x666f7801 // "fox" 1
	lockPurge   = 0x666f7802
)

// Options say how to open a DB.
type Options struct {
	// Host names this foxproxy in the entries it stores and the claims
	// it takes (its hostname).
	Host string
	// Migrate applies missing migrations when the database is first
	// reached (the daemon, foxproxy db migrate); without it, a schema
	// older than this binary is an error (the command line).
	Migrate bool
}

// DB is a connection pool to the custody database, shared by its two
// areas (Quarantine and Held).
type DB struct {
	pool *pgxpool.Pool
	// poolCfg is the pool's configuration, for LogPool's second pool.
	poolCfg  *pgxpool.Config
	cfg      Config
	opts     Options
	redacted string

	// schema is the version found once the database was first reached
	// and checked (0: not yet); checked under schemaMu so that only one
	// caller migrates at a time.
	schemaMu sync.Mutex
	schema   atomic.Int64

	errors atomic.Uint64 // operations that failed for the database's sake
}

// Open prepares a pool for cfg. It does not wait for the database: a
// database that is down at start is reached (and its schema checked or
// migrated) by the first operation that finds it up, so foxproxy starts
// and delivers clean mail meanwhile.
func Open(cfg Config, opts Options) (*DB, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return nil, errors.New("pgstore: no database URL")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgconn's parse errors can quote the URL; never its password.
		return nil, fmt.Errorf("pgstore: database.url: %s", redactErr(err, cfg.URL))
	}
	if cfg.PasswordFile != "" {
		pw, err := readPassword(cfg.PasswordFile)
		if err != nil {
			return nil, err
		}
		pc.ConnConfig.Password = pw
	}
	// Durability does not depend on the server's default: a commit
	// returns after the WAL flush (RFC 5321 §6.1: the 250 is a promise).
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pc.ConnConfig.RuntimeParams["application_name"] = "foxproxy"
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > cfg.Timeout {
		pc.ConnConfig.ConnectTimeout = cfg.Timeout
	}
	if !strings.Contains(cfg.URL, "pool_max_conns") {
		// pgxpool's default (the CPU count, at least 4) is too few for
		// concurrent sessions that each quarantine while a rescan reads.
		pc.MaxConns = 16
	}
	pc.HealthCheckPeriod = 10 * time.Second
	// Every connection is pinged when it is taken from the pool, not
	// only one idle for a second (pgxpool's default): after a restart or
	// a failover of the database, each pooled connection is dead, and one
	// used without a ping would cost a message one more 451 after the
	// database is back. A custody write is worth a round trip.
	pc.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	poolCfg := pc.Copy()
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return &DB{pool: pool, poolCfg: poolCfg, cfg: cfg, opts: opts, redacted: Redacted(cfg.URL)}, nil
}

// LogPool opens a second pool to the same database, with the same
// connection settings (password, TLS, synchronous_commit on), of at most
// maxConns connections, for work that must never take a connection the
// custody needs: the message log. Like Open, it does not wait for the
// database. The caller closes it.
func (db *DB) LogPool(maxConns int32) (*pgxpool.Pool, error) {
	pc := db.poolCfg.Copy()
	pc.MaxConns = max(maxConns, 1)
	pc.MinConns = 0
	pc.ConnConfig.RuntimeParams["application_name"] = "foxproxy message log"
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: message log pool: %w", err)
	}
	return pool, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// String is the database's URL without its password.
func (db *DB) String() string { return db.redacted }

// Config is the configuration in force, defaults filled in.
func (db *DB) Config() Config { return db.cfg }

// bound is ctx limited by the configured timeout.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.cfg.Timeout)
}

// fail counts err (when there is one) and wraps it for the caller.
func (db *DB) fail(err error) error {
	if err == nil {
		return nil
	}
	db.errors.Add(1)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pgstore: %s: no answer within %s: %w", db.redacted, db.cfg.Timeout, err)
	}
	return fmt.Errorf("pgstore: %s: %w", db.redacted, err)
}

// ready makes sure the schema was checked (and migrated, with
// Options.Migrate) since this DB was opened.
func (db *DB) ready(ctx context.Context) error {
	if db.schema.Load() != 0 {
		return nil
	}
	db.schemaMu.Lock()
	defer db.schemaMu.Unlock()
	if db.schema.Load() != 0 {
		return nil
	}
	var v int
	var err error
	if db.opts.Migrate {
		v, err = db.migrate(ctx)
	} else {
		v, err = db.version(ctx)
		if err == nil && v < SchemaVersion {
			err = fmt.Errorf("%w: it is version %d, this foxproxy needs %d; run foxproxy db migrate (or start the daemon, which migrates)",
				ErrSchemaOld, v, SchemaVersion)
		}
	}
	if err != nil {
		return err
	}
	db.schema.Store(int64(v))
	return nil
}

// Migrate applies the migrations the database lacks and returns its
// schema version. Hosts that start together migrate one at a time.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	db.schemaMu.Lock()
	defer db.schemaMu.Unlock()
	v, err := db.migrate(ctx)
	if err == nil {
		db.schema.Store(int64(v))
	}
	return v, err
}

func (db *DB) migrate(ctx context.Context) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, db.fail(err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockMigrate); err != nil {
		return 0, db.fail(err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now(), host text NOT NULL)`); err != nil {
		return 0, db.fail(err)
	}
	var cur int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&cur); err != nil {
		return 0, db.fail(err)
	}
	if err := tooNew(cur); err != nil {
		return 0, err
	}
	for _, m := range migrations[cur:] {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return 0, db.fail(fmt.Errorf("migration %s: %w", m.name, err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version, host) VALUES ($1, $2)", m.version, db.opts.Host); err != nil {
			return 0, db.fail(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, db.fail(err)
	}
	return SchemaVersion, nil
}

func tooNew(v int) error {
	if v > SchemaVersion {
		return fmt.Errorf("%w: it is version %d, this foxproxy knows up to %d; upgrade foxproxy on this host", ErrSchemaTooNew, v, SchemaVersion)
	}
	return nil
}

// version reads the schema version (0: none yet) and refuses one newer
// than this binary knows.
func (db *DB) version(ctx context.Context) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var v int
	err := db.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: never migrated
		return 0, nil
	}
	if err != nil {
		return 0, db.fail(err)
	}
	return v, tooNew(v)
}

// Health is what /status shows of the database.
type Health struct {
	Up      bool
	Latency time.Duration // of a SELECT 1, when up
	Schema  int           // the schema version found (0: not yet checked)
	Err     string
	Pool    PoolStats
}

// PoolStats are the pool's gauges and counters, for the metrics.
type PoolStats struct {
	Acquired, Idle, Total, Max int32
	AcquireCount               int64
	AcquireDuration            time.Duration
	EmptyAcquireCount          int64 // acquires that had to wait for a connection
	Errors                     uint64
}

// Stats returns the pool's statistics without touching the database.
func (db *DB) Stats() PoolStats {
	s := db.pool.Stat()
	return PoolStats{Acquired: s.AcquiredConns(), Idle: s.IdleConns(), Total: s.TotalConns(), Max: s.MaxConns(),
		AcquireCount: s.AcquireCount(), AcquireDuration: s.AcquireDuration(), EmptyAcquireCount: s.EmptyAcquireCount(),
		Errors: db.errors.Load()}
}

// Probe asks the database (SELECT 1, and the schema check when it was not
// done yet) and reports its health.
func (db *DB) Probe(ctx context.Context) Health {
	h := Health{Pool: db.Stats()}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	start := time.Now()
	var one int
	if err := db.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		h.Err = db.fail(err).Error()
		return h
	}
	h.Latency = time.Since(start)
	if err := db.ready(ctx); err != nil {
		h.Err = err.Error()
		return h
	}
	h.Up, h.Schema = true, int(db.schema.Load())
	return h
}

// Quarantine is the quarantine proper.
func (db *DB) Quarantine() *Store { return &Store{db: db, area: areaQuarantine} }

// HeldArea is the held area: mail waiting for a rescan.
func (db *DB) HeldArea() *Store { return &Store{db: db, area: areaHeld} }

// tx runs f in a transaction bounded by the timeout, after the schema
// check, and commits.
func (db *DB) tx(ctx context.Context, f func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if err := db.ready(ctx); err != nil {
		return err
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return db.fail(err)
	}
	defer rollback(tx)
	if err := f(ctx, tx); err != nil {
		return err
	}
	return db.fail(tx.Commit(ctx))
}

// rollback ends a transaction that was not committed (a no-op after a
// commit), bounded: the connection may be the one that just failed.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tx.Rollback(ctx)
}
