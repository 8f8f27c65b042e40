//go:build bench

package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/integration/harness"
	"github.com/foxproxy/foxproxy/internal/pgtest"
)

// env is what all scenarios share: the binaries, the daemons, the messages.
type env struct {
	opts     options
	fox      string // foxproxy binary
	sink     *sink
	rbl      *harness.Rbldnsd
	clamd    *harness.Clamd
	icap     *harness.CICAP
	pg       *pgtest.Server // the quarantine's database, durable (fsync on)
	pgConn   *pgx.Conn      // the benchmark's own connection, for counting entries
	dir      string         // messages, configurations
	messages []*message
}

// scenario is one way of sending: straight to the sink (baseline, no
// config) or through a foxproxy with config's lines added to the common
// ones.
type scenario struct {
	key    string // short name, for FOXBENCH_ONLY and file names
	name   string // as in the table
	config func(e *env) []string
	// quarantines: every message ends in foxproxy's quarantine, not at
	// the sink; runs count them in the store (quarantineCounter).
	quarantines bool
}

func (s *scenario) baseline() bool { return s.config == nil }

const (
	ersZone = "bl.bench.test"
	wrsZone = "dbl.bench.test"
)

func reputationConfig(e *env, cacheSize string) []string {
	return []string{
		"dns: {servers: [" + e.rbl.Addr() + "], timeout: 2s, cache_size: " + cacheSize + "}",
		"ers:",
		"  zones: [{zone: " + ersZone + ", codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]",
		"wrs:",
		"  zones: [{zone: " + wrsZone + ", codes: {127.0.1.2: spam, 127.0.1.4: phish}}]",
		"policy:",
		"  rules:",
		"    - {name: ers-exploit, if: {ers: [exploit]}, then: reject}",
		"    - {name: ers-spam, if: {ers: [spam]}, then: tag, subject_prefix: \"[SPAM]\"}",
		"    - {name: wrs-phish, if: {wrs: [phish]}, then: quarantine}",
		"    - {name: wrs-spam, if: {wrs: [spam]}, then: tag, subject_prefix: \"[LINK]\"}",
	}
}

const virusRule = `policy:
  rules:
    - {name: virus, if: {scan: infected}, then: quarantine}`

var scenarios = []*scenario{
	{key: "baseline", name: "baseline: smtp-source → smtp-sink"},
	{key: "pass", name: "foxproxy pass-through", config: func(*env) []string { return nil }},
	{key: "erswarm", name: "ERS+WRS, warm cache", config: func(e *env) []string { return reputationConfig(e, "10000") }},
	{key: "erscold", name: "ERS+WRS, cold (cache_size 0)", config: func(e *env) []string { return reputationConfig(e, "0") }},
	// The local clamd over its unix socket, Debian's usual setup.
	{key: "clamd", name: "clamd (conventional)", config: func(e *env) []string {
		return []string{"scan:", "  conventional: {url: \"unix:" + e.clamd.SocketPath() + "\"}", virusRule}
	}},
	// No fallback: a failing ICAP scan defers the message, and the run
	// shows as invalid instead of silently measuring clamd.
	{key: "icap", name: "ICAP (smart: c-icap → clamd)", config: func(e *env) []string {
		return []string{"scan:", "  smart: {url: \"" + e.icap.URL() + "\"}", "  fallback_to_conventional: false", virusRule}
	}},
	// The file store: two files per entry, each fsync'd, and the
	// directory (quarantine.dir, on the benchmark's temporary disk).
	{key: "qfile", name: "quarantine all: file store", quarantines: true,
		config: func(*env) []string { return []string{quarantineAll} }},
	// PostgreSQL 15 on loopback with its default durability (fsync
	// on, synchronous_commit on): one transaction per entry.
	{key: "qdb", name: "quarantine all: PostgreSQL", quarantines: true,
		config: func(e *env) []string {
			return []string{"database: {url: \"" + e.pg.URL() + "\"}", quarantineAll}
		}},
}

// quarantineAll quarantines every benchmark message by a policy rule on
// its sender: the custody path (a durable write before 250) is all the
// work there is, with no stage in front of it.
const quarantineAll = `policy:
  rules:
    - {name: bench-quarantine, if: {from: [` + sender + `]}, then: quarantine}`

func scenarioByKey(key string) *scenario {
	for _, s := range scenarios {
		if s.key == key {
			return s
		}
	}
	panic("no scenario " + key)
}

// startDaemons starts the list server and the scanners the scenarios use.
func startDaemons(t *testing.T, e *env) {
	t.Helper()
	soa := func(zone string) string {
		// Answers, positive and negative (SOA minimum), live an hour: the
		// warm cache stays warm for the whole benchmark.
		return "$SOA 3600 ns." + zone + " hostmaster.bench.test 1 1h 10m 1d 1h"
	}
	e.rbl = harness.StartRbldnsd(t,
		harness.Zone{Name: ersZone, Type: "ip4set", Lines: []string{
			soa(ersZone), "$TTL 3600",
			":127.0.0.2:Listed in the bench list: $",
			"127.0.0.2", // the RFC 5782 test point, for the startup check
			"192.0.2.66 :127.0.0.4:Exploit source $",
		}},
		harness.Zone{Name: wrsZone, Type: "dnset", Lines: []string{
			soa(wrsZone), "$TTL 3600",
			":127.0.1.2:Domain $ is listed",
			"test", // the RFC 5782 test point, for the breaker's probe
			".evil.example :127.0.1.4:Phishing domain $",
		}},
	)
	e.clamd = harness.StartClamd(t)
	e.icap = harness.StartCICAP(t, e.clamd)
	startDatabase(t, e)
}

// startDatabase starts the PostgreSQL the quarantine scenario's database
// store uses: Debian's PostgreSQL 15 in a temporary directory (initdb as
// the postgres user when run as root), on a free loopback port, with
// PostgreSQL's default durability settings, so that a commit there costs
// what it costs in production, as the file store's fsyncs do.
func startDatabase(t *testing.T, e *env) {
	t.Helper()
	pg, err := pgtest.LaunchWith(pgtest.Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	conn, err := pgx.Connect(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	e.pg, e.pgConn = pg, conn
}

// counter counts the messages that arrived where a run's messages end:
// the sink, or a quarantine.
type counter interface {
	messages() int
	waitMessages(want int, timeout time.Duration) int
	what() string
}

// storeCounter counts the entries of one quarantine.
type storeCounter struct {
	name  string
	count func() (int, error)
}

func (c *storeCounter) what() string { return c.name }

func (c *storeCounter) messages() int {
	n, err := c.count()
	if err != nil {
		return -1
	}
	return n
}

func (c *storeCounter) waitMessages(want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := c.messages()
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quarantineCounter counts the entries a quarantine scenario's foxproxy
// stored: files named ID.json (written last, after the message) in its
// quarantine.dir, or rows of the database's quarantine.
func quarantineCounter(e *env, sc *scenario, fox *foxproxy) counter {
	if sc.key == "qdb" {
		return &storeCounter{name: "the database's quarantine", count: func() (int, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var n int
			err := e.pgConn.QueryRow(ctx, "SELECT count(*) FROM entries WHERE area = 'quarantine'").Scan(&n)
			return n, err
		}}
	}
	return &storeCounter{name: "the quarantine directory", count: func() (int, error) {
		files, err := os.ReadDir(fox.qdir)
		if os.IsNotExist(err) {
			return 0, nil
		}
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".json") {
				n++
			}
		}
		return n, err
	}}
}

// foxproxy is one running foxproxy.
type foxproxy struct {
	addr  string
	admin string // http://ADDR of the admin endpoint (pprof on)
	proc  *harness.Process
	qdir  string // quarantine.dir
}

func (f *foxproxy) pid() int { return f.proc.PID() }

// startFoxproxy starts foxproxy with the common configuration (listening
// on a free port, delivering to the sink, admin endpoint with pprof) plus
// extra lines, and waits until it accepts connections.
func startFoxproxy(t *testing.T, e *env, name string, extra ...string) *foxproxy {
	t.Helper()
	addr, admin := harness.FreeAddr(t), harness.FreeAddr(t)
	qdir := filepath.Join(t.TempDir(), "quarantine")
	cfg := append([]string{
		"listen: " + addr,
		"downstream: " + e.sink.addr,
		"hostname: foxproxy.bench.test",
		"admin_listen: " + admin,
		"admin_pprof: true",
		"quarantine: {dir: " + qdir + "}",
	}, extra...)
	path := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := harness.RunProcess(t, e.fox, "-config", path)
	p.WaitLog(t, `"foxproxy started"`, 20*time.Second)
	harness.WaitPort(t, addr, 10*time.Second)
	return &foxproxy{addr: addr, admin: "http://" + admin, proc: p, qdir: qdir}
}
