//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/internal/benchmsg"
)

// machine describes where the benchmark ran.
type machine struct {
	nproc     string
	cpu       string
	memory    string
	os        string
	kernel    string
	goVersion string
	packages  string // Debian package versions of the daemons
	postfix   string // mail_version
	loadStart string
	loadEnd   string
}

func describeMachine() machine {
	m := machine{goVersion: runtime.Version(), loadStart: loadAverage()}
	m.nproc = strings.TrimSpace(command("nproc"))
	if m.nproc == "" {
		m.nproc = strconv.Itoa(runtime.NumCPU())
	}
	m.cpu = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil && kb > 0 {
		m.memory = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
	}
	m.os = strings.Trim(procField("/etc/os-release", "PRETTY_NAME"), `"`)
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(data))
	}
	if out := command("postconf", "-d", "-h", "mail_version"); out != "" {
		m.postfix = strings.TrimSpace(out)
	} else if out := command("/usr/sbin/postconf", "-d", "-h", "mail_version"); out != "" {
		m.postfix = strings.TrimSpace(out)
	}
	m.packages = strings.Join(strings.Fields(strings.ReplaceAll(
		command("dpkg-query", "-W", "-f", "${Package}=${Version}\n", "postfix", "rbldnsd", "clamav-daemon", "c-icap"), "\n", " ")), ", ")
	return m
}

func command(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// procField returns the value of the first "name: value" or "name=value"
// line of a file.
func procField(path, name string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			k, v, ok = strings.Cut(line, "=")
		}
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

type report struct {
	opts     options
	machine  machine
	started  time.Time
	finished time.Time
	groups   []*group
	memory   *memoryResult
	gobench  []goBench
	profiles []*profile
	failed   []string // parts that failed (their rows may be missing): see the test log
}

// Targets of issue 21 (10 KB messages; ratios to the baseline of the same
// run and session pattern) and of issue 8 (memory, DNS cache).
const (
	targetPassNewC20  = 0.40  // no checks, new session per message, c=20
	targetPassKeptC20 = 0.47  // no checks, kept sessions, c=20 (issue 8's run; no loss)
	targetERSWarmKept = 0.40  // ERS+WRS, warm cache, kept sessions, c=20
	targetClamdNew    = 0.15  // clamd, new session per message, c=20
	targetPassNewC1   = 0.30  // no checks, new session per message, c=1
	targetIdleBytes   = 200e6 // 1,000 idle sessions
	targetBigRise     = 16e6  // a 50 MB message
	targetLookupNs    = 1000  // a cached DNS-list answer
)

// targetQuarantineDB is issue 19's target: quarantining into PostgreSQL
// keeps this share of the file store's msg/s (same size, concurrency and
// run; both durable).
const targetQuarantineDB = 0.70

// storeRatio is the quarantine rows' PostgreSQL msg/s over the file
// store's (medians), both with the session pattern pt, and the same per
// round; 0 when a row is missing.
func (g *group) storeRatio(pt pattern) (q float64, perRound []float64) {
	var file, db *row
	for _, r := range g.rows {
		if r.pt != pt {
			continue
		}
		switch r.sc.key {
		case "qfile":
			file = r
		case "qdb":
			db = r
		}
	}
	if file == nil || db == nil {
		return 0, nil
	}
	fm, dm := median(file.validRates()), median(db.validRates())
	if fm == 0 || dm == 0 {
		return 0, nil
	}
	for i, x := range db.runs {
		if i < len(file.runs) && x.valid() && file.runs[i].valid() {
			perRound = append(perRound, x.rate()/file.runs[i].rate())
		}
	}
	slices.Sort(perRound)
	return dm / fm, perRound
}

// validRates are the msg/s of the row's valid runs, sorted.
func (r *row) validRates() []float64 {
	var v []float64
	for _, x := range r.runs {
		if x.valid() {
			v = append(v, x.rate())
		}
	}
	slices.Sort(v)
	return v
}

func median(v []float64) float64 {
	switch n := len(v); {
	case n == 0:
		return 0
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// ratio is the row's median over the baseline's, 0 when either is unknown.
func (g *group) ratio(r *row) float64 {
	b := g.baseline(r.pt)
	if b == nil {
		return 0
	}
	bm, rm := median(b.validRates()), median(r.validRates())
	if bm == 0 || rm == 0 {
		return 0
	}
	return rm / bm
}

// roundRatios are the row's runs over the baseline's run of the same round
// (run i of every row belongs to round i), for the valid pairs, sorted:
// their range shows how much the machine's noise moves the ratio.
func (g *group) roundRatios(r *row) []float64 {
	b := g.baseline(r.pt)
	if b == nil || b == r {
		return nil
	}
	var q []float64
	for i, x := range r.runs {
		if i < len(b.runs) && x.valid() && b.runs[i].valid() {
			q = append(q, x.rate()/b.runs[i].rate())
		}
	}
	slices.Sort(q)
	return q
}

func (r *row) invalid() int {
	n := 0
	for _, x := range r.runs {
		if !x.valid() {
			n++
		}
	}
	return n
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func signedMs(d time.Duration) string {
	return fmt.Sprintf("%+.2f", float64(d)/float64(time.Millisecond))
}

// thousands formats a rate: 12,345 for big numbers, one decimal for small.
func thousands(f float64) string {
	if f < 100 {
		return fmt.Sprintf("%.1f", f)
	}
	s := strconv.FormatInt(int64(f+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	m := rep.machine
	p("# foxproxy benchmark, %s", rep.started.Format("2006-01-02 15:04 MST"))
	p("")
	p("- **Machine:** %s CPUs (`nproc`), %s, %s; %s, %s", m.nproc, m.cpu, m.memory, m.os, m.kernel)
	p("- **Software:** %s; Postfix %s (smtp-source, smtp-sink); %s", m.goVersion, m.postfix, m.packages)
	p("- **Load average** (1, 5, 15 min): %s at start, %s at the end. The machine may be shared: compare rows of one run, not runs of different days.", m.loadStart, m.loadEnd)
	if rest, ok := rep.restOfMachine(); ok {
		warn := ""
		if rest > 0.5 {
			warn = " **The machine was not quiet: other processes took CPU the benchmark's processes could have used, so rates are low and ratios noisy; rerun at a quiet time to compare with a target.**"
		}
		p("- **Rest of the machine:** %.2f cores on average (of %s) used by processes this benchmark did not start, during the measured runs.%s", rest, m.nproc, warn)
	}
	mode := "full"
	if rep.opts.quick {
		mode = "quick"
	}
	p("- **Mode:** %s: %d measured run(s) per row of about %v each, after calibrating warm-up runs; latency over %d messages per endpoint on a kept session and %d with a session per message; took %v.",
		mode, rep.opts.runs, rep.opts.runSeconds, rep.opts.latencyRounds, rep.opts.sessionRounds, rep.finished.Sub(rep.started).Round(time.Second))
	if len(rep.groups) > 0 {
		var sizes []string
		for _, g := range rep.groups {
			s := fmt.Sprintf("%s = %s bytes", g.msg.label, thousands(float64(len(g.msg.wire))))
			if !slices.Contains(sizes, s) {
				sizes = append(sizes, s)
			}
		}
		p("- **Messages:** %s on the wire; a Postfix Received header, text and HTML parts with %d links (7 domains, one behind a Google redirector); the 1 MB one carries a base64 attachment. None is listed, so every message is delivered, but in the quarantine rows, whose policy rule quarantines every message (counted in the store, not at the sink).", strings.Join(sizes, ", "), len(benchmsg.Links))
	}
	p("")
	rep.throughputTable(p)
	rep.cpuTable(p)
	rep.latencyTable(p)
	rep.targetsTable(p)
	rep.memoryTable(p)
	rep.problems(p)
	rep.profileSection(p)
	return b.String()
}

// restOfMachine is the average CPU (in cores) that other processes used
// during all measured runs.
func (rep *report) restOfMachine() (float64, bool) {
	var rest, wall float64
	for _, g := range rep.groups {
		for _, r := range g.rows {
			for _, x := range r.runs {
				ours := 0.0
				for _, v := range x.cpu {
					ours += v
				}
				rest += max(x.busy-ours, 0)
				wall += x.elapsed.Seconds()
			}
		}
	}
	if wall == 0 {
		return 0, false
	}
	return rest / wall, true
}

func (rep *report) throughputTable(p func(string, ...any)) {
	if len(rep.groups) == 0 {
		return
	}
	p("## Throughput")
	p("")
	p("Every scenario is measured with both of Postfix's session patterns, in the same rounds: *kept* (`smtp-source -d`, message after message on each session, as Postfix's smtp client does with a cached connection) and *new* (a whole SMTP session per message, as it does when its connection cache has nothing). msg/s is the median of the valid runs (smtp-source wall time), the spread their minimum and maximum; ratio is the median over the median of the baseline with the same sessions, size and concurrency in this run, *per round* the range of each run over the baseline run of its round. Added latency (ms) is per message at concurrency 1 on a kept session, percentile through foxproxy minus the same percentile straight to the sink (see the latency table for a session per message). CPU is foxproxy's user+system time per 1,000 messages; peak RSS its VmHWM in this row (a fresh process per row).")
	p("")
	p("| size | c | scenario | sessions | msg/s | spread | ratio | per round | added p50 | added p99 | CPU s/1k msg | peak RSS | runs |")
	p("|---|--:|---|---|--:|---|--:|---|--:|--:|--:|--:|---|")
	for _, g := range rep.groups {
		base := g.baseline(patterns[0])
		for _, r := range g.rows {
			rates := r.validRates()
			rate, spread, ratio := "INVALID", "—", "—"
			if len(rates) > 0 {
				rate = thousands(median(rates))
				spread = thousands(rates[0]) + "–" + thousands(rates[len(rates)-1])
				if len(rates) == 1 {
					spread = "1 run"
				}
			}
			if q := g.ratio(r); q > 0 {
				ratio = fmt.Sprintf("%.2f", q)
			}
			perRound := "—"
			if q := g.roundRatios(r); len(q) > 1 {
				perRound = fmt.Sprintf("%.2f–%.2f", q[0], q[len(q)-1])
			}
			p50, p99 := "—", "—"
			if r.kept != nil && base != nil && base.kept != nil && !r.sc.baseline() && len(r.kept.d) > 0 {
				p50 = signedMs(r.kept.percentile(50) - base.kept.percentile(50))
				p99 = signedMs(r.kept.percentile(99) - base.kept.percentile(99))
			}
			cpu, rss := "—", "—"
			if r.fox && r.msgs > 0 {
				cpu = fmt.Sprintf("%.2f", r.cpu/float64(r.msgs)*1000)
			}
			if r.fox && r.hwm > 0 {
				rss = mib(r.hwm)
			}
			runs := fmt.Sprintf("%d/%d valid", len(r.runs)-r.invalid(), len(r.runs))
			if r.invalid() > 0 {
				runs = fmt.Sprintf("**%d of %d INVALID**", r.invalid(), len(r.runs))
			}
			name := r.sc.name
			if r.sc.baseline() {
				name = "**" + name + "**"
			}
			p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", g.msg.label, g.conc, name, r.pt.key, rate, spread, ratio, perRound, p50, p99, cpu, rss, runs)
		}
	}
	p("")
}

// programs whose CPU time the breakdown shows, in this order.
var programs = []string{"smtp-source", "smtp-sink", "foxproxy", "rbldnsd", "clamd", "c-icap", "postgres"}

func (rep *report) cpuTable(p func(string, ...any)) {
	if len(rep.groups) == 0 {
		return
	}
	p("## Where the CPU goes")
	p("")
	p("CPU seconds per 1,000 messages of every process on the path during the measured runs (user+system, from /proc; smtp-source from its exit status; only the processes this benchmark started are counted). *Busy* is their sum over the runs' wall time, in cores: on this machine the limit is %s. *Rest* is roughly what the rest of the machine used meanwhile, in cores: all CPU time from /proc/stat less these processes (the load of anything else on a shared machine, and some of the kernel's loopback work; /proc/stat is sampled at clock ticks while process times are exact, so it is approximate, and about 0 on a quiet machine).", rep.machine.nproc)
	p("")
	p("| size | c | scenario | %s | total | busy | rest |", strings.Join(programs, " | "))
	p("|---|--:|---|%s--:|--:|--:|", strings.Repeat("--:|", len(programs)))
	for _, g := range rep.groups {
		for _, r := range g.rows {
			sum := map[string]float64{}
			var elapsed time.Duration
			machine := 0.0
			for _, x := range r.runs {
				for k, v := range x.cpu {
					sum[k] += v
				}
				elapsed += x.elapsed
				machine += x.busy
			}
			if r.msgs == 0 || elapsed == 0 {
				continue
			}
			cells := make([]string, len(programs))
			total := 0.0
			for i, prog := range programs {
				total += sum[prog]
				cells[i] = "—"
				if v, ok := sum[prog]; ok && v > 0 {
					cells[i] = fmt.Sprintf("%.2f", v/float64(r.msgs)*1000)
				}
			}
			ours := 0.0
			for _, v := range sum {
				ours += v
			}
			p("| %s | %d | %s | %s | %.2f | %.2f | %.2f |", g.msg.label, g.conc, r.name(), strings.Join(cells, " | "),
				total/float64(r.msgs)*1000, total/elapsed.Seconds(), max(machine-ours, 0)/elapsed.Seconds())
		}
	}
	p("")
}

func (rep *report) latencyTable(p func(string, ...any)) {
	var gs []*group
	for _, g := range rep.groups {
		if b := g.baseline(patterns[0]); g.conc == 1 && b != nil && b.kept != nil {
			gs = append(gs, g)
		}
	}
	if len(gs) == 0 {
		return
	}
	p("## Latency per message at concurrency 1 (ms)")
	p("")
	p("The benchmark's own client (go-smtp) sends to every endpoint in turn, one message each per round. *Kept session*: MAIL to the reply after the final dot, %d messages per endpoint on one session. *Session per message*: connect, EHLO, MAIL, RCPT, DATA, QUIT, %d messages, as Postfix's smtp client does at low load when no connection is cached (foxproxy then also connects and says EHLO to the downstream). *Added*: the same percentile minus the baseline's.", rep.opts.latencyRounds, rep.opts.sessionRounds)
	p("")
	p("| size | scenario | p50 | p99 | added p50 | added p99 | session/msg p50 | p99 | added p50 | added p99 |")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, g := range gs {
		b := g.baseline(patterns[0])
		for _, r := range g.rows {
			if !r.pt.keep {
				continue // measured on the kept-session row's endpoint
			}
			if r.kept == nil || len(r.kept.d) == 0 {
				p("| %s | %s | failed | | | | | | | |", g.msg.label, r.sc.name)
				continue
			}
			add := func(s, base *samples, q float64) string {
				if r.sc.baseline() || len(s.d) == 0 {
					return "—"
				}
				return signedMs(s.percentile(q) - base.percentile(q))
			}
			sess50, sess99 := "—", "—"
			if len(r.sess.d) > 0 {
				sess50, sess99 = ms(r.sess.percentile(50)), ms(r.sess.percentile(99))
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", g.msg.label, r.sc.name,
				ms(r.kept.percentile(50)), ms(r.kept.percentile(99)), add(r.kept, b.kept, 50), add(r.kept, b.kept, 99),
				sess50, sess99, add(r.sess, b.sess, 50), add(r.sess, b.sess, 99))
		}
	}
	p("")
}

func (rep *report) targetsTable(p func(string, ...any)) {
	type line struct{ target, measured, verdict string }
	var lines []line
	ratioTarget := func(key, pt string, conc int, want float64, label string) {
		for _, g := range rep.groups {
			if g.conc != conc || g.msg.key != "10k" {
				continue
			}
			for _, r := range g.rows {
				if r.sc.key != key || r.pt.key != pt {
					continue
				}
				q := g.ratio(r)
				lines = append(lines, line{fmt.Sprintf("%s ≥ %.2f", label, want),
					fmt.Sprintf("%s, c=%d: %.3f", g.msg.label, g.conc, q), ratioVerdict(q, want)})
			}
		}
	}
	ratioTarget("pass", "new", 20, targetPassNewC20, "no checks, new session per message, c=20")
	ratioTarget("pass", "kept", 20, targetPassKeptC20, "no checks, kept sessions, c=20")
	ratioTarget("erswarm", "kept", 20, targetERSWarmKept, "ERS+WRS, warm cache, kept sessions, c=20")
	ratioTarget("clamd", "new", 20, targetClamdNew, "clamd, new session per message, c=20")
	ratioTarget("pass", "new", 1, targetPassNewC1, "no checks, new session per message, c=1")
	for _, g := range rep.groups {
		for _, pt := range patterns {
			q, rounds := g.storeRatio(pt)
			if q == 0 {
				continue
			}
			spread := ""
			if len(rounds) > 1 {
				spread = fmt.Sprintf(" (per round %.2f–%.2f)", rounds[0], rounds[len(rounds)-1])
			}
			lines = append(lines, line{fmt.Sprintf("quarantine: PostgreSQL / file store ≥ %.2f", targetQuarantineDB),
				fmt.Sprintf("%s, c=%d, %s: %.3f%s", g.msg.label, g.conc, pt.name, q, spread), ratioVerdict(q, targetQuarantineDB)})
		}
	}
	if m := rep.memory; m != nil {
		lines = append(lines, line{"1,000 idle sessions ≤ 200 MB RSS",
			fmt.Sprintf("%.1f MB (%s) with %d sessions", float64(m.idleRSS)/1e6, mib(m.idleRSS), m.idleSessions),
			limitVerdict(float64(m.idleRSS), targetIdleBytes, m.idleErr == "" && m.idleRSS > 0, "MB", 1e6)})
		rise := m.bigHWM - m.bigRSSBefore
		lines = append(lines, line{"a 50 MB message raises RSS ≤ 16 MB",
			fmt.Sprintf("+%.1f MB (%s → peak %s)", float64(rise)/1e6, mib(m.bigRSSBefore), mib(m.bigHWM)),
			limitVerdict(float64(rise), targetBigRise, m.bigErr == "" && m.bigHWM > 0, "MB", 1e6)})
	}
	for _, gb := range rep.gobench {
		lines = append(lines, line{"cached DNS-list answer ≤ 1 µs",
			fmt.Sprintf("%s: %.0f ns/op", gb.name, gb.median()),
			limitVerdict(gb.median(), targetLookupNs, len(gb.nsOp) > 0, "ns", 1)})
	}
	if len(lines) == 0 {
		return
	}
	p("## Targets (issues 21, 8 and 19)")
	p("")
	p("| target | measured | verdict |")
	p("|---|---|---|")
	for _, l := range lines {
		p("| %s | %s | %s |", l.target, l.measured, l.verdict)
	}
	p("")
}

func ratioVerdict(got, want float64) string {
	if got == 0 {
		return "not measured (no valid run)"
	}
	if got >= want {
		return fmt.Sprintf("met (+%.3f, %.0f%% of the target)", got-want, 100*got/want)
	}
	return fmt.Sprintf("**NOT met** (−%.3f, %.0f%% of the target)", want-got, 100*got/want)
}

func limitVerdict(got, limit float64, ok bool, unit string, scale float64) string {
	if !ok {
		return "not measured (see problems)"
	}
	if got <= limit {
		return fmt.Sprintf("met (%.1f %s under, %.0f%% of the limit)", (limit-got)/scale, unit, 100*got/limit)
	}
	return fmt.Sprintf("**NOT met** (%.1f %s over)", (got-limit)/scale, unit)
}

func (rep *report) memoryTable(p func(string, ...any)) {
	m := rep.memory
	if m == nil && len(rep.gobench) == 0 {
		return
	}
	p("## Memory and the DNS cache")
	p("")
	if m != nil {
		per := float64(m.idleRSS-m.idleRSSBefore) / float64(max(m.idleSessions, 1)) / 1024
		p("- **%d idle sessions** (connect, banner, EHLO, hold) to a pass-through foxproxy: RSS %s with them, %s before (%.1f KiB per session); peak %s.",
			m.idleSessions, mib(m.idleRSS), mib(m.idleRSSBefore), per, mib(m.idleHWM))
		p("- **One %s-byte message** (max_message_bytes 64MiB, spool.memory_threshold 1MiB) through a pass-through foxproxy in %v: RSS %s before (after one 10 KB message), peak %s after: +%s.",
			thousands(float64(m.bigSize)), m.bigTook.Round(time.Millisecond), mib(m.bigRSSBefore), mib(m.bigHWM), mib(m.bigHWM-m.bigRSSBefore))
	}
	for _, gb := range rep.gobench {
		vals := make([]string, len(gb.nsOp))
		for i, v := range gb.nsOp {
			vals[i] = fmt.Sprintf("%.0f", v)
		}
		p("- `go test -bench %s -benchmem ./reputation/`: median %.0f ns/op (runs: %s), %s B/op, %s allocs/op.",
			strings.TrimPrefix(gb.name, "Benchmark"), gb.median(), strings.Join(vals, ", "), gb.bOp, gb.allocs)
	}
	p("")
}

func (rep *report) problems(p func(string, ...any)) {
	var lines []string
	for _, f := range rep.failed {
		lines = append(lines, fmt.Sprintf("**%s failed** (its rows may be missing or incomplete): see the test's log", f))
	}
	for _, g := range rep.groups {
		for _, r := range g.rows {
			for i, x := range r.warm {
				if !x.valid() {
					lines = append(lines, fmt.Sprintf("%s, c=%d, %s: warm-up run %d (%d msgs) INVALID: %s", g.msg.label, g.conc, r.name(), i+1, x.sent, x.err))
				}
			}
			for i, x := range r.runs {
				if !x.valid() {
					lines = append(lines, fmt.Sprintf("%s, c=%d, %s: run %d (%d msgs) INVALID: %s", g.msg.label, g.conc, r.name(), i+1, x.sent, x.err))
				}
			}
			for _, n := range r.notes {
				lines = append(lines, fmt.Sprintf("%s, c=%d, %s: %s", g.msg.label, g.conc, r.name(), n))
			}
		}
	}
	if m := rep.memory; m != nil {
		if m.idleErr != "" {
			lines = append(lines, "idle sessions: "+m.idleErr)
		}
		if m.bigErr != "" {
			lines = append(lines, "50 MB message: "+m.bigErr)
		}
	}
	for _, pr := range rep.profiles {
		if pr.err != "" {
			lines = append(lines, "profile "+pr.name+": "+pr.err)
		}
	}
	p("## Problems")
	p("")
	if len(lines) == 0 {
		p("None: every run's messages were all counted at the sink (the quarantine rows': in the quarantine).")
	}
	for _, l := range lines {
		p("- %s", l)
	}
	p("")
}

func (rep *report) profileSection(p func(string, ...any)) {
	if len(rep.profiles) == 0 {
		return
	}
	p("## Profiles")
	p("")
	for _, pr := range rep.profiles {
		if pr.err != "" {
			continue
		}
		p("### %s", pr.name)
		p("")
		p("%d messages at %.0f msg/s while profiling; files in `%s`.", pr.msgs, pr.rate, pr.dir)
		p("")
		p("CPU, flat (the functions themselves):")
		p("```")
		p("%s", firstLines(pr.cpuTop, 22))
		p("```")
		p("CPU, cumulative (with what they call), foxproxy's own code and the SMTP library:")
		p("```")
		p("%s", ownLines(pr.cpuCum, 25))
		p("```")
		p("Allocated bytes during the load:")
		p("```")
		p("%s", firstLines(pr.allocTop, 14))
		p("```")
		p("Allocated objects during the load:")
		p("```")
		p("%s", firstLines(pr.objTop, 14))
		p("```")
		p("")
	}
}

// ownLines keeps pprof's header lines and, of the table, the rows of
// foxproxy's packages and go-smtp, the first n of them.
func ownLines(s string, n int) string {
	var out []string
	rows := 0
	for _, l := range strings.Split(s, "\n") {
		isRow := strings.Contains(l, "%")
		switch {
		case !isRow || strings.HasPrefix(strings.TrimSpace(l), "Showing"):
			out = append(out, l)
		case (strings.Contains(l, "foxproxy/foxproxy/") || strings.Contains(l, "go-smtp")) && rows < n:
			out = append(out, l)
			rows++
		}
	}
	return strings.Join(out, "\n")
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
