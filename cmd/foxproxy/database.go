package main

// The custody database (database.url, package pgstore): opening it for the
// daemon and the command line, its row in /status, and "foxproxy db".

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/health"
	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/quarantine"
)

// startMigrateWait bounds how long the daemon's start waits for the
// database: one that does not answer is reached later, by the first
// custody operation, while clean mail flows.
const startMigrateWait = 10 * time.Second

// Message log sizing: its own pool of logPoolConns connections (one
// batch being written, one maintenance, one search of the log), so a slow
// or dead database never makes the log take a connection a custody write
// needs; how long the daemon's stop (or a reload) waits for the queued
// rows to be written; and how long a search of the log may take: the
// console's request alone does not end it (a browser may wait), and each
// search running holds one of those few connections, which the writer's
// batches then wait for and, past their timeout, drop.
const (
	logPoolConns  = 3
	logFlushWait  = 5 * time.Second
	logSearchWait = pgstore.DefaultTimeout
)

// openDatabase opens the database of database.url for the custody and the
// message log, and migrates it. A database whose schema is newer than this
// binary refuses the start; one that does not answer does not (quarantine
// and hold verdicts get 451 and log rows are dropped until it does).
func (w *wired) openDatabase(cfg *config.Config, log *zap.Logger) error {
	db, err := pgstore.Open(cfg.Database.Store(), pgstore.Options{Host: cfg.Proxy().HostnameOrDefault(), Migrate: true})
	if err != nil {
		return err
	}
	w.closers = append(w.closers, db.Close)
	w.db = &dbWiring{db: db}
	ctx, cancel := context.WithTimeout(context.Background(), startMigrateWait)
	defer cancel()
	v, err := db.Migrate(ctx)
	switch {
	case errors.Is(err, pgstore.ErrSchemaTooNew):
		return fmt.Errorf("database: %w", err)
	case err != nil:
		log.Warn("the database does not answer; quarantine and hold verdicts get 451 and message log rows are dropped until it does, delivered mail is not affected",
			zap.String("database", db.String()), zap.Error(err))
	default:
		log.Info("database ready", zap.String("database", db.String()), zap.Int("schema", v))
	}
	pool, err := db.LogPool(logPoolConns)
	if err != nil {
		return err
	}
	w.closers = append(w.closers, pool.Close)
	// A schema not migrated yet (the database was down) is migrated by
	// the monitor's first probe that reaches it; until then the log's
	// writes fail and their rows are dropped and counted.
	lw := msglog.NewWriter(pool, msglog.Options{Retention: db.Config().LogRetention, Log: log.Named("msglog")})
	w.msglog, w.db.log, w.logDB = lw, lw, pool
	w.closers = append(w.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), logFlushWait)
		defer cancel()
		if err := lw.Close(ctx); err != nil {
			log.Warn("message log", zap.Error(err))
		}
	})
	return nil
}

// openCustody opens the store for the quarantine verdicts of a running
// foxproxy: the database when database.url is set (openDatabase opened
// it), else quarantine.dir.
func (w *wired) openCustody(cfg *config.Config) (quarantine.Store, error) {
	if w.db != nil {
		return w.db.db.Quarantine(), nil
	}
	return quarantine.Open(cfg.Quarantine.Dir)
}

// openCustodyCLI opens the store the command line works on, without
// creating anything: the database (not migrated: that is the daemon's or
// "foxproxy db migrate"'s job), or the existing quarantine.dir. close
// releases it.
func openCustodyCLI(cfg *config.Config) (store quarantine.Store, close func(), err error) {
	if cfg.Database.URL != "" {
		db, err := pgstore.Open(cfg.Database.Store(), pgstore.Options{Host: cfg.Proxy().HostnameOrDefault()})
		if err != nil {
			return nil, nil, err
		}
		return db.Quarantine(), db.Close, nil
	}
	if cfg.Quarantine.Dir == "" {
		return nil, nil, fmt.Errorf("%s sets neither database.url nor quarantine.dir", cfg.File)
	}
	s, err := quarantine.OpenExisting(cfg.Quarantine.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%v (quarantine.dir of %s; foxproxy creates it when a rule can quarantine)", err, cfg.File)
	}
	return s, func() {}, nil
}

// dbWiring keeps the custody database's health between the monitor's
// probes, for /status and the metrics.
type dbWiring struct {
	db  *pgstore.DB
	log *msglog.Writer // the message log's writer

	mu     sync.Mutex
	last   pgstore.Health
	probed bool
	since  time.Time
}

// Probe asks the database (admin.Prober).
func (d *dbWiring) Probe(ctx context.Context) {
	h := d.db.Probe(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.probed || h.Up != d.last.Up {
		d.since = time.Now()
	}
	d.last, d.probed = h, true
}

// Reports is the database's row in /status (health.Reporter).
func (d *dbWiring) Reports() []health.Report { return []health.Report{d.dependency()} }

// dependency is the database's row in /status: up or down, the latency of
// its probe and its schema version; while it is down, what mail does.
func (d *dbWiring) dependency() admin.Dependency {
	d.mu.Lock()
	h, probed, since := d.last, d.probed, d.since
	d.mu.Unlock()
	pool := d.db.Stats()
	dep := admin.Dependency{Kind: "database", Name: "custody", Target: d.db.String(), Since: since,
		Counters: map[string]uint64{"pool_acquired": uint64(pool.Acquired), "pool_idle": uint64(pool.Idle),
			"pool_total": uint64(pool.Total), "pool_max": uint64(pool.Max), "acquires": uint64(pool.AcquireCount),
			"acquire_waits": uint64(pool.EmptyAcquireCount), "errors": pool.Errors}}
	if d.log != nil {
		st := d.log.Stats()
		dep.Counters["log_written"], dep.Counters["log_dropped"], dep.Counters["log_queued"] = st.Written, st.Dropped, uint64(st.Queued)
	}
	switch {
	case !probed:
		dep.State, dep.OK = "unchecked", true
	case h.Up:
		dep.State, dep.OK = "up", true
		dep.Detail = fmt.Sprintf("schema %d, latency %s", h.Schema, h.Latency.Round(time.Microsecond))
	default:
		dep.State, dep.LastError = "down", h.Err
		dep.Detail = "quarantine and hold verdicts get 451 (the mail stays in Postfix); delivered mail is not affected; message log rows are dropped and counted; it recovers by itself"
	}
	return dep
}

// counters are the database's cumulative counters for the metrics.
func (d *dbWiring) counters(c map[string]uint64) {
	pool := d.db.Stats()
	c["database_errors_total"] = pool.Errors
	c["database_acquires_total"] = uint64(pool.AcquireCount)
	c["database_acquire_waits_total"] = uint64(pool.EmptyAcquireCount)
	c["database_acquire_milliseconds_total"] = uint64(pool.AcquireDuration.Milliseconds())
}

const dbUsage = `usage: foxproxy db migrate [-config FILE]
  migrate   apply the schema migrations the database (database.url) lacks,
            and print its schema version; the daemon also does this at start
Exit status: 0 done, 1 failed, 2 usage error.
`

// dbCmd runs "foxproxy db ...".
func dbCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "migrate" {
		fmt.Fprint(stderr, dbUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("foxproxy db migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); empty: the embedded default")
	rest, err := parseArgs(fs, args[1:])
	if err != nil {
		return exitUsage
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "foxproxy db migrate: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	cfg, ok := loadDatabaseConfig("foxproxy db migrate", *cfgPath, "", stderr)
	if !ok {
		return exitFailure
	}
	db, err := pgstore.Open(cfg.Database.Store(), pgstore.Options{Host: cfg.Proxy().HostnameOrDefault(), Migrate: true})
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy db migrate: %v\n", err)
		return exitFailure
	}
	defer db.Close()
	v, err := db.Migrate(context.Background())
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy db migrate: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: schema version %d\n", db, v)
	return exitOK
}

// loadDatabaseConfig loads the configuration of a command that works on
// the database, and says so (to stderr, false) when it names none. why
// ends the message, e.g. ": nowhere to import to".
func loadDatabaseConfig(cmd, path, why string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, false
	}
	if cfg.Database.URL == "" {
		fmt.Fprintf(stderr, "%s: %s sets no database.url%s\n", cmd, cfg.File, why)
		return nil, false
	}
	return cfg, true
}
