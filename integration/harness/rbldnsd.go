package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is one rbldnsd dataset. Several datasets may share a Name (an ip4set and
// an ip6trie for the same list, say).
type Zone struct {
	// Name is the DNS zone, e.g. "bl.example.test".
	Name string
	// Type is the rbldnsd dataset type: "ip4set", "ip6trie", "dnset", ...
	Type string
	// Lines are the dataset file's lines, written as given (rbldnsd(8) syntax):
	//   ":127.0.0.2:Listed: $"       default A value and TXT for the entries below
	//   "127.0.0.2"                  an entry (RFC 5782 test point of an IP list)
	//   "198.51.100.0/24 :127.0.0.4:" an entry with its own A value and no TXT
	//   ".spam.example.org"          (dnset) the domain and all its subdomains
	// Without a "$SOA" line, NXDOMAIN answers carry no SOA; "$TTL" sets the
	// answers' TTL (rbldnsd's default is 35 minutes).
	Lines []string
}

// Rbldnsd is a running rbldnsd serving DNS lists on a loopback UDP port.
type Rbldnsd struct {
	t    testing.TB
	dir  string
	addr string
	proc *Process

	mu    sync.Mutex
	zones []Zone
	files []string    // zone i's file, relative to dir
	mtime []time.Time // the mtime last given to zone i's file
}

// StartRbldnsd starts rbldnsd in the foreground (-n) on a free loopback port
// with one file per zone, and waits until it answers a DNS query. It is stopped
// by PID when the test ends.
func StartRbldnsd(t testing.TB, zones ...Zone) *Rbldnsd {
	t.Helper()
	bin := requireBin(t, "rbldnsd")
	if len(zones) == 0 {
		t.Fatalf("harness: StartRbldnsd needs at least one zone")
	}
	// rbldnsd drops root for the rbldns user, which must read the zone files:
	// tempDir is 0755 and the files are written 0644.
	r := &Rbldnsd{t: t, dir: tempDir(t, "rbldnsd"), addr: FreeAddr(t)}
	// -n: foreground, so the PID started is the daemon; -b 127.0.0.1/PORT;
	// -w: zone file names are relative to r.dir; -c 0: no periodic reload
	// check, tests reload with SIGHUP (Reload); -l +-: log every query to
	// stdout, line-buffered (Queries).
	args := []string{"-n", "-b", strings.Replace(r.addr, ":", "/", 1), "-w", r.dir, "-c", "0", "-l", "+-"}
	for i, z := range zones {
		if z.Name == "" || z.Type == "" || strings.Contains(z.Name+z.Type, ":") {
			t.Fatalf("harness: bad rbldnsd zone %+v", z)
		}
		file := fmt.Sprintf("%02d-%s-%s.zone", i, z.Type, z.Name)
		r.zones = append(r.zones, z)
		r.files = append(r.files, file)
		r.mtime = append(r.mtime, time.Time{})
		if err := r.writeZone(i); err != nil {
			t.Fatalf("harness: %v", err)
		}
		args = append(args, z.Name+":"+z.Type+":"+file)
	}
	r.proc = newProcess(t, "rbldnsd", bin, args, filepath.Join(r.dir, "rbldnsd.log"))
	r.start(t)
	return r
}

// writeZone writes zone i's file. rbldnsd reloads a file on SIGHUP only when
// its mtime (in seconds) changed, so two writes within a second would go
// unnoticed: each write sets an mtime at least a second past the last one.
func (r *Rbldnsd) writeZone(i int) error {
	path := filepath.Join(r.dir, r.files[i])
	if err := writeFile(path, []byte(strings.Join(r.zones[i].Lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return r.bumpMtime(i)
}

func (r *Rbldnsd) bumpMtime(i int) error {
	m := time.Now().Truncate(time.Second)
	if !m.After(r.mtime[i]) {
		m = r.mtime[i].Add(time.Second)
	}
	r.mtime[i] = m
	return os.Chtimes(filepath.Join(r.dir, r.files[i]), m, m)
}

func (r *Rbldnsd) start(t testing.TB) {
	t.Helper()
	began := time.Now()
	if err := r.proc.start(); err != nil {
		t.Fatalf("harness: rbldnsd: %v", err)
	}
	// RFC 5782 test point of the first zone. Any answer will do (a dnset has
	// no such entry): it shows the zones are loaded and the port is served.
	probe := "2.0.0.127." + r.zones[0].Name
	var lastErr error
	if !waitFor(startTimeout, func() bool {
		if r.proc.aliveErr() != nil {
			return true
		}
		_, lastErr = r.Query(probe, dns.TypeA)
		return lastErr == nil
	}) || r.proc.aliveErr() != nil {
		t.Fatalf("harness: rbldnsd on %s did not answer %s (last error %v; %v); last lines of its log:\n%s",
			r.addr, probe, lastErr, r.proc.aliveErr(), r.proc.log.tail(30))
	}
	t.Logf("harness: rbldnsd up in %v on %s (PID %d)", time.Since(began).Round(time.Millisecond), r.addr, r.proc.PID())
}

// Addr is "127.0.0.1:PORT", where rbldnsd answers over UDP.
func (r *Rbldnsd) Addr() string { return r.addr }

// Stop stops rbldnsd (SIGTERM by PID) and waits for its exit: queries then time out.
func (r *Rbldnsd) Stop() {
	r.t.Helper()
	r.proc.Stop()
}

// Start starts a stopped rbldnsd again on the same port with the current zone
// files, and waits until it answers.
func (r *Rbldnsd) Start() {
	r.t.Helper()
	r.start(r.t)
}

// SetZone replaces the lines of the dataset with z's Name and Type. The running
// rbldnsd sees the change after Reload (or Start).
func (r *Rbldnsd) SetZone(z Zone) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, old := range r.zones {
		if old.Name == z.Name && old.Type == z.Type {
			r.zones[i].Lines = z.Lines
			if err := r.writeZone(i); err != nil {
				r.t.Fatalf("harness: %v", err)
			}
			return
		}
	}
	r.t.Fatalf("harness: rbldnsd has no %s dataset for zone %s", z.Type, z.Name)
}

var reloaded = regexp.MustCompile(`zones reloaded`)

// Reload makes rbldnsd re-read its zone files (SIGHUP) and waits until it has.
func (r *Rbldnsd) Reload() {
	r.t.Helper()
	r.mu.Lock()
	// rbldnsd logs "zones reloaded" only when a file changed: touch them all so
	// that every Reload reloads and can be waited for.
	for i := range r.files {
		if err := r.bumpMtime(i); err != nil {
			r.mu.Unlock()
			r.t.Fatalf("harness: %v", err)
		}
	}
	r.mu.Unlock()
	before := r.proc.log.count(reloaded)
	r.proc.Signal(syscall.SIGHUP)
	if !waitFor(startTimeout, func() bool { return r.proc.log.count(reloaded) > before || r.proc.aliveErr() != nil }) ||
		r.proc.aliveErr() != nil {
		r.t.Fatalf("harness: rbldnsd did not reload (%v); last lines of its log:\n%s", r.proc.aliveErr(), r.proc.log.tail(30))
	}
}

// Query sends one query to rbldnsd (1 s timeout). A listed name gets rcode
// NOERROR with A (and TXT) answers; an unlisted one NXDOMAIN; a name outside
// every zone REFUSED.
func (r *Rbldnsd) Query(name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	in, _, err := c.Exchange(m, r.addr)
	return in, err
}

// Log returns rbldnsd's output: startup, reloads and one line per query.
func (r *Rbldnsd) Log() string { return r.proc.Log() }

// queryLine is rbldnsd's query log line: "TIME CLIENT NAME TYPE CLASS: RESULT".
var queryLine = regexp.MustCompile(`(?m)^\d+ \S+ (\S+) (\S+) IN: `)

// Queries returns the queries rbldnsd answered so far, oldest first, as
// "NAME TYPE" (e.g. "2.0.0.127.bl.example.test A"): to see whether foxproxy
// asked, and how often (caching, coalescing).
func (r *Rbldnsd) Queries() []string {
	var q []string
	for _, m := range queryLine.FindAllStringSubmatch(r.proc.Log(), -1) {
		q = append(q, m[1]+" "+m[2])
	}
	return q
}

// ReverseIP returns the DNSBL query label sequence for an IP address: the
// reversed octets for IPv4 ("2.0.0.127"), the 32 reversed nibbles for IPv6,
// without a trailing zone (RFC 5782 §2.1, §2.4).
func ReverseIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d", v4[3], v4[2], v4[1], v4[0])
	}
	v6 := ip.To16()
	if v6 == nil {
		return ""
	}
	labels := make([]string, 0, 32)
	for i := len(v6) - 1; i >= 0; i-- {
		labels = append(labels, strconv.FormatUint(uint64(v6[i]&0xf), 16), strconv.FormatUint(uint64(v6[i]>>4), 16))
	}
	return strings.Join(labels, ".")
}
