package harness

import (
	"testing"

	"github.com/foxproxy/foxproxy/internal/pgtest"
)

// Postgres is a private PostgreSQL 15 server (internal/pgtest): a cluster in
// a temporary directory, on a free loopback port, with a database
// "foxproxy" that user postgres reaches without a password.
//
//	pg := harness.StartPostgres(t)
//	cfg := "database: {url: \"" + pg.URL() + "\"}"
//	pg.Stop()    // orderly shutdown: the database is down
//	pg.Kill()    // SIGKILL to the server and its backends: a crash
//	pg.Start()   // again, same port and data (after a Kill: crash recovery)
type Postgres struct {
	*pgtest.Server
	t testing.TB
}

// StartPostgres starts a server for t; it is killed and removed when t ends.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	return &Postgres{Server: pgtest.Start(t), t: t}
}

// Start starts the server again after Stop or Kill, with the same options,
// and waits until it accepts connections; a failure fails the test that
// started it.
func (p *Postgres) Start() {
	if err := p.Restart(); err != nil {
		p.t.Errorf("harness: %v", err)
	}
}
