//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// options come from the environment (bench/run.sh sets them from its flags).
type options struct {
	quick       bool
	runs        int           // measured runs per row (median of these)
	runSeconds  time.Duration // aimed length of one run
	minWarm     time.Duration // a warm-up run must last this long to calibrate
	maxMessages int           // per run
	runTimeout  time.Duration

	latencyWarm, latencyRounds, sessionRounds int

	out        string         // the Markdown report
	profileDir string         // "": no profiles
	only       *regexp.Regexp // nil: every row; else rows whose "size/cC/scenario" matches
	skipMemory bool
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func readOptions(t *testing.T) options {
	o := options{
		quick: os.Getenv("FOXBENCH_QUICK") != "",
		runs:  5, runSeconds: 3 * time.Second, minWarm: 500 * time.Millisecond,
		maxMessages: 200000, runTimeout: 5 * time.Minute,
		latencyWarm: 10, latencyRounds: 200, sessionRounds: 100,
		out:        os.Getenv("FOXBENCH_OUT"),
		profileDir: os.Getenv("FOXBENCH_PROFILE"),
		skipMemory: os.Getenv("FOXBENCH_SKIP_MEMORY") != "",
	}
	if o.quick {
		o.runs, o.runSeconds, o.minWarm = 1, time.Second, 200*time.Millisecond
		o.latencyWarm, o.latencyRounds, o.sessionRounds = 3, 40, 20
	}
	o.runs = envInt("FOXBENCH_RUNS", o.runs)
	if s := envInt("FOXBENCH_SECONDS", 0); s > 0 {
		o.runSeconds = time.Duration(s) * time.Second
	}
	if v := os.Getenv("FOXBENCH_ONLY"); v != "" {
		re, err := regexp.Compile(v)
		if err != nil {
			t.Fatalf("FOXBENCH_ONLY: %v", err)
		}
		o.only = re
	}
	if o.out == "" {
		o.out = filepath.Join("results", time.Now().Format("2006-01-02")+".md")
	}
	return o
}

// TestBench is the whole measurement: see README.md in this directory.
func TestBench(t *testing.T) {
	began := time.Now()
	o := readOptions(t)
	rep := &report{opts: o, started: began, machine: describeMachine()}
	e := &env{opts: o, dir: t.TempDir()}
	postfixBin(t, "smtp-source")
	e.fox = harness.BuildFoxproxy(t)
	e.sink = startSink(t)
	startDaemons(t, e)
	e.messages = []*message{
		writeMessage(t, e.dir, "10 KB", "10k", 10<<10),
		writeMessage(t, e.dir, "1 MB", "1m", 1<<20),
	}
	for _, m := range e.messages {
		t.Logf("message %s: %d bytes on the wire, %s", m.label, len(m.wire), m.path)
	}

	for _, m := range e.messages {
		for _, conc := range []int{1, 20} {
			name := fmt.Sprintf("%s/c%d", m.key, conc)
			if !t.Run(name, func(t *testing.T) {
				rep.groups = append(rep.groups, measureGroup(t, e, m, conc))
			}) {
				rep.failed = append(rep.failed, name)
			}
		}
	}
	if !o.skipMemory {
		if !t.Run("memory", func(t *testing.T) { rep.memory = measureMemory(t, e) }) {
			rep.failed = append(rep.failed, "memory")
		}
		if !t.Run("gobench", func(t *testing.T) { rep.gobench = runGoBench(t, o.quick) }) {
			rep.failed = append(rep.failed, "gobench")
		}
	}
	if o.profileDir != "" {
		if !t.Run("profiles", func(t *testing.T) { rep.profiles = takeProfiles(t, e) }) {
			rep.failed = append(rep.failed, "profiles")
		}
	}
	rep.finished = time.Now()
	rep.machine.loadEnd = loadAverage()

	text := rep.markdown()
	fmt.Println()
	fmt.Println(text)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(o.out)
	fmt.Printf("bench: results written to %s (%v)\n", abs, time.Since(began).Round(time.Second))
}

// row is one line of the throughput table: one scenario with one session
// pattern at one size and concurrency.
type row struct {
	sc    *scenario
	pt    pattern
	msg   *message
	conc  int
	warm  []run
	runs  []run
	fox   bool
	cpu   float64  // foxproxy CPU seconds over the measured runs (per-run /proc deltas)
	msgs  int      // messages in the measured runs
	hwm   int64    // foxproxy's VmHWM, bytes
	kept  *samples // latency samples; on kept-session rows only
	sess  *samples
	notes []string
}

// name is the row's scenario and session pattern, as in the tables.
func (r *row) name() string { return r.sc.name + ", " + r.pt.name }

// group is every scenario at one size and concurrency, measured together.
type group struct {
	msg  *message
	conc int
	rows []*row
}

// baseline is the baseline row of pt, the pattern every row's ratio is
// measured against: smtp-source straight to smtp-sink with the same
// sessions.
func (g *group) baseline(pt pattern) *row {
	for _, r := range g.rows {
		if r.sc.baseline() && r.pt == pt {
			return r
		}
	}
	return nil
}

// endpoint is where one row's messages go: the sink, or a foxproxy.
type endpoint struct {
	row   *row
	addr  string
	fox   *foxproxy // nil for the baseline
	n     int       // messages per measured run
	count counter   // where the messages are counted: the sink, or the quarantine
}

func (ep *endpoint) foxPID() int {
	if ep.fox == nil {
		return 0
	}
	return ep.fox.pid()
}

// measureGroup measures every scenario, each with kept sessions and with a
// new session per message, at one message size and concurrency. One
// foxproxy per row is started fresh (so its peak RSS is this row's), each
// endpoint is warmed up and calibrated, and then the measured runs go round
// robin: baseline kept, baseline new, pass-through kept, pass-through new,
// ..., then again, so that a noisy moment of a shared machine slows all
// rows of a round rather than one row's every run, and the two patterns
// of a scenario are always measured moments apart.
func measureGroup(t *testing.T, e *env, m *message, conc int) *group {
	g := &group{msg: m, conc: conc}
	var eps []*endpoint
	for _, sc := range scenarios {
		for _, pt := range patterns {
			id := fmt.Sprintf("%s/c%d/%s/%s", m.key, conc, sc.key, pt.key)
			if e.opts.only != nil && !sc.baseline() && !e.opts.only.MatchString(id) {
				continue
			}
			ep := &endpoint{row: &row{sc: sc, pt: pt, msg: m, conc: conc, fox: !sc.baseline()}, addr: e.sink.addr, count: e.sink}
			if !sc.baseline() {
				ep.fox = startFoxproxy(t, e, fmt.Sprintf("%s-c%d-%s-%s", m.key, conc, sc.key, pt.key), sc.config(e)...)
				ep.addr = ep.fox.addr
			}
			if sc.quarantines {
				ep.count = quarantineCounter(e, sc, ep.fox)
			}
			eps = append(eps, ep)
			g.rows = append(g.rows, ep.row)
		}
	}
	for _, ep := range eps {
		ep.n, ep.row.warm = calibrate(t, ep.count, ep.addr, m, ep.row.pt, conc, e.opts, ep.foxPID())
		last := ep.row.warm[len(ep.row.warm)-1]
		t.Logf("%-56s warm-up: %d runs, last %d msgs in %v (%s); measuring %d msgs per run",
			ep.row.name(), len(ep.row.warm), last.sent, last.elapsed.Round(time.Millisecond), validText(last), ep.n)
	}
	for round := range e.opts.runs {
		for _, ep := range eps {
			r := source(t, ep.count, ep.addr, m, ep.row.pt, conc, ep.n, e.opts.runTimeout, ep.foxPID())
			ep.row.runs = append(ep.row.runs, r)
			t.Logf("round %d %-56s %6d msgs %8.1f msg/s, CPU %.2f s (machine %.2f s) in %v, %s", round+1, ep.row.name(),
				r.sent, r.rate(), r.ours(), r.busy, r.elapsed.Round(time.Millisecond), validText(r))
		}
	}
	for _, ep := range eps {
		for _, r := range ep.row.runs {
			ep.row.msgs += r.sent
			ep.row.cpu += r.cpu["foxproxy"]
		}
		if ep.fox == nil {
			continue
		}
		var err error
		if ep.row.hwm, err = statusBytes(ep.fox.pid(), "VmHWM"); err != nil {
			ep.row.notes = append(ep.row.notes, "RSS: "+err.Error())
		}
	}
	if conc == 1 {
		// Latency is measured by the benchmark's own client, kept and
		// session per message alike, on the kept-session rows' endpoints.
		var leps []*endpoint
		var addrs []string
		for _, ep := range eps {
			if ep.row.pt.keep {
				leps = append(leps, ep)
				addrs = append(addrs, ep.addr)
			}
		}
		before := e.sink.messages()
		// The quarantine rows' messages end in their store, not at the
		// sink. The database's count covers every qdb row of the group;
		// only its kept-session row sends here, so the count before and
		// after is that row's.
		each := e.opts.latencyWarm + e.opts.latencyRounds + e.opts.sessionRounds
		stored := map[*endpoint]int{}
		want := 0
		for _, ep := range leps {
			if ep.count == counter(e.sink) {
				want += each
			} else {
				stored[ep] = ep.count.messages()
			}
		}
		kept, sess := measureLatency(addrs, m.wire, e.opts.latencyWarm, e.opts.latencyRounds, e.opts.sessionRounds)
		if got := e.sink.waitMessages(before+want, 3*time.Second) - before; got != want {
			t.Errorf("latency: the sink counted %d of %d messages", got, want)
			g.rows[0].notes = append(g.rows[0].notes, fmt.Sprintf("latency runs: the sink counted %d of %d messages", got, want))
		}
		for ep, b := range stored {
			if got := ep.count.waitMessages(b+each, 3*time.Second) - b; got != each {
				t.Errorf("latency: %s counted %d of %d messages", ep.count.what(), got, each)
				ep.row.notes = append(ep.row.notes, fmt.Sprintf("latency runs: %s counted %d of %d messages", ep.count.what(), got, each))
			}
		}
		for i, ep := range leps {
			ep.row.kept, ep.row.sess = kept[i], sess[i]
			if n := kept[i].errors + sess[i].errors; n > 0 {
				ep.row.notes = append(ep.row.notes, fmt.Sprintf("latency: %d messages failed (%s)", n, firstOf(kept[i].first, sess[i].first)))
			}
		}
	}
	for _, ep := range eps {
		if ep.fox != nil {
			ep.fox.proc.Stop()
		}
	}
	return g
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func validText(r run) string {
	if r.valid() {
		return "valid"
	}
	return "INVALID: " + r.err
}
