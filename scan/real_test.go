package scan

// Tests against the real daemons from Debian's packages: clamd
// (clamav-daemon) with a one-line EICAR .hdb, and c-icap with
// libc-icap-mod-virus-scan backed by that clamd (integration/harness/clamd.go and cicap.go). They are
// started once, on free loopback ports in a private directory, and stopped
// by PID when the tests end.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/pipeline"
)

const installHint = "run ./scripts/install-test-deps.sh"

func TestMain(m *testing.M) {
	code := m.Run()
	stopDaemons()
	os.Exit(code)
}

// daemon is a started process, stopped by PID.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

var real struct {
	once        sync.Once
	err         error
	dir         string
	clamdTCP    string // host:port
	clamdPort   int
	clamdUnix   string // socket path
	icapURL     string // virus_scan?mode=simple (recommended)
	icapDefault string // virus_scan as integration/harness/clamd.go and cicap.go configures it
	daemons     []*daemon
	daemonsLock sync.Mutex
}

// realDaemons starts clamd and c-icap once and returns their addresses.
func realDaemons(t testing.TB) (clamdTCP, clamdUnix, icapURL string) {
	t.Helper()
	real.once.Do(func() { real.err = startDaemons() })
	if real.err != nil {
		t.Fatal(real.err)
	}
	return real.clamdTCP, real.clamdUnix, real.icapURL
}

func startDaemons() error {
	dir, err := os.MkdirTemp("", "foxproxy-scan-")
	if err != nil {
		return err
	}
	real.dir = dir
	os.Chmod(dir, 0o755)
	real.clamdPort = freePort()
	real.clamdTCP = fmt.Sprintf("127.0.0.1:%d", real.clamdPort)
	real.clamdUnix = filepath.Join(dir, "clamd.sock")
	if _, err := startClamd(dir, real.clamdPort, real.clamdUnix); err != nil {
		return err
	}
	port, _, err := startCICAP(filepath.Join(dir, "icap"), real.clamdPort)
	if err != nil {
		return err
	}
	real.icapURL = fmt.Sprintf("icap://127.0.0.1:%d/avsimple", port)
	real.icapDefault = fmt.Sprintf("icap://127.0.0.1:%d/avscan", port)
	return nil
}

func startClamd(dir string, port int, unixPath string) (*daemon, error) {
	bin, err := findBinary("clamd", "/usr/sbin/clamd")
	if err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		return nil, err
	}
	// integration/harness/clamd.go and cicap.go: the md5 and size of the EICAR file, a public value.
	if err := os.WriteFile(filepath.Join(db, "eicar.hdb"), []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"), 0o644); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "clamd.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`TCPSocket %d
TCPAddr 127.0.0.1
LocalSocket %s
DatabaseDirectory %s
Foreground yes
LogFile %s/clamd.log
PidFile %s/clamd.pid
Bytecode no
StreamMaxLength 4M
MaxThreads 12
IdleTimeout 2
`, port, unixPath, db, dir, dir)), 0o644)
	if err != nil {
		return nil, err
	}
	return startDaemon("clamd", dir, fmt.Sprintf("127.0.0.1:%d", port), bin, "-c", conf)
}

// startCICAP starts c-icap with virus_scan on clamd at clamdPort and
// returns its port.
func startCICAP(dir string, clamdPort int) (int, *daemon, error) {
	bin, err := findBinary("c-icap", "/usr/bin/c-icap")
	if err != nil {
		return 0, nil, err
	}
	mods, _ := filepath.Glob("/usr/lib/*/c_icap/virus_scan.so")
	if len(mods) == 0 {
		return 0, nil, fmt.Errorf("c-icap's virus_scan.so not found (libc-icap-mod-virus-scan): %s", installHint)
	}
	modDir := filepath.Dir(mods[0])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	port := freePort()
	conf := filepath.Join(dir, "c-icap.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`PidFile %[1]s/c-icap.pid
CommandsSocket %[1]s/c-icap.ctl
Port 127.0.0.1:%[2]d
User root
TmpDir %[1]s
ServerLog %[1]s/server.log
AccessLog %[1]s/access.log
ModulesDir %[3]s
ServicesDir %[3]s
TemplateDir /usr/share/c_icap/templates/
LoadMagicFile /etc/c-icap/c-icap.magic
Module common clamd_mod.so
clamd_mod.ClamdHost 127.0.0.1
clamd_mod.ClamdPort %[4]d
Service avscan virus_scan.so
ServiceAlias avsimple virus_scan?allow204=on&sizelimit=off&mode=simple
virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE
virus_scan.DefaultEngine clamd
virus_scan.MaxObjectSize 5M
`, dir, port, modDir, clamdPort)), 0o644)
	if err != nil {
		return 0, nil, err
	}
	d, err := startDaemon("c-icap", dir, fmt.Sprintf("127.0.0.1:%d", port), bin, "-f", conf, "-N")
	return port, d, err
}

func findBinary(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return "", fmt.Errorf("%s is not installed: %s", name, installHint)
}

func startDaemon(name, dir, addr, bin string, args ...string) (*daemon, error) {
	logPath := filepath.Join(dir, name+".out")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Should the test binary die without TestMain's cleanup, so does the
	// daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); out.Close(); close(d.done) }()
	real.daemonsLock.Lock()
	real.daemons = append(real.daemons, d)
	real.daemonsLock.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return d, nil
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited at start: %s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("%s does not accept on %s after 30s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends d by its PID: SIGTERM, then SIGKILL after 10s.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

func stopDaemons() {
	real.daemonsLock.Lock()
	ds := real.daemons
	real.daemons = nil
	real.daemonsLock.Unlock()
	for i := len(ds) - 1; i >= 0; i-- {
		ds[i].stop()
	}
	if real.dir != "" {
		os.RemoveAll(real.dir)
	}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

const eicarName = "Eicar-Test-Signature.UNOFFICIAL"

func TestRealClamd(t *testing.T) {
	tcpAddr, unixPath, _ := realDaemons(t)
	ctx := context.Background()
	for _, addr := range []string{"tcp://" + tcpAddr, tcpAddr, "unix:" + unixPath} {
		t.Run(addr, func(t *testing.T) {
			c, err := NewClamd(addr, Options{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if v, err := c.Version(ctx); err != nil || !strings.HasPrefix(v, "ClamAV ") {
				t.Fatalf("version %q, %v", v, err)
			}
			for _, tc := range []struct {
				name string
				msg  []byte
				want Result
			}{
				{"EICAR attachment", mail(eicar(t), 0), Infected(eicarName)},
				{"EICAR file", eicar(t), Infected(eicarName)},
				{"clean mail", mail([]byte("just a text file\n"), 2000), Clean},
				{"empty", nil, Clean},
				{"EICAR after 1 MB", mail(eicar(t), 1<<20), Infected(eicarName)},
			} {
				res, err := c.Scan(ctx, bytes.NewReader(tc.msg), int64(len(tc.msg)))
				if err != nil || res != tc.want {
					t.Errorf("%s: got %v, %v; want %v", tc.name, res, err, tc.want)
				}
			}
			idle, _ := c.pool.state()
			if idle != 1 {
				t.Errorf("%d idle sessions after sequential scans, want 1", idle)
			}
			c.Close()
		})
	}
}

func TestRealClamdSessionIdleTimeout(t *testing.T) {
	// The test clamd has IdleTimeout 2: it closes the idle session, and the
	// next scan must notice and use a new one.
	tcpAddr, _, _ := realDaemons(t)
	c, _ := NewClamd(tcpAddr, Options{Timeout: 10 * time.Second, IdleTimeout: time.Minute})
	defer c.Close()
	msg := mail(eicar(t), 0)
	for i := range 2 {
		if i == 1 {
			time.Sleep(2500 * time.Millisecond)
		}
		if res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg))); err != nil || res != Infected(eicarName) {
			t.Fatalf("scan %d: %v, %v", i, res, err)
		}
	}
}

func TestRealClamdSizeLimit(t *testing.T) {
	// clamd.conf says StreamMaxLength 4M: clamd answers early and closes.
	tcpAddr, _, _ := realDaemons(t)
	c, _ := NewClamd(tcpAddr, Options{Timeout: 10 * time.Second})
	msg := mail(nil, 6<<20)
	_, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
	wantKind(t, err, ErrSizeLimit)
}

func TestRealClamdConcurrent(t *testing.T) {
	tcpAddr, _, _ := realDaemons(t)
	c, _ := NewClamd(tcpAddr, Options{Timeout: 20 * time.Second, MaxConcurrent: 4})
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, want := mail(nil, i*5000), Clean
			if i%2 == 0 {
				msg, want = mail(eicar(t), i*5000), Infected(eicarName)
			}
			if res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg))); err != nil || res != want {
				t.Errorf("scan %d: %v, %v", i, res, err)
			}
		}()
	}
	wg.Wait()
}

func TestRealICAP(t *testing.T) {
	realDaemons(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, url, contentType string
		// bigName is what a large infected mail yields: virus_scan's
		// default mode commits to a 200 before scanning bodies over ~4 KB
		// and then truncates the echo without naming the threat.
		bigName string
	}{
		{"mode=simple", real.icapURL, "", eicarName},
		{"mode=simple rfc822", real.icapURL, "message/rfc822", eicarName},
		{"default mode", real.icapDefault, "", "unknown"},
		{"mode=simple from the URL", real.icapDefault + "?mode=simple&sizelimit=off", "", eicarName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewICAP(tc.url, Options{Timeout: 20 * time.Second, ContentType: tc.contentType})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			o, ok := c.ServiceOptions()
			if !ok || o.Preview != 1024 || !o.Allow204 || o.TTL != time.Hour || o.ISTag == "" {
				t.Fatalf("OPTIONS %+v", o)
			}
			for _, sc := range []struct {
				name string
				msg  []byte
				want Result
			}{
				{"EICAR attachment", mail(eicar(t), 0), Infected(eicarName)},
				{"clean mail", mail([]byte("just a text file\n"), 200), Clean},
				{"clean within preview", []byte("Subject: hi\r\n\r\nhello\r\n"), Clean},
				{"empty", nil, Clean},
				{"clean 1 MB", mail(nil, 1<<20), Clean},
				{"EICAR after 8 KB", mail(eicar(t), 8<<10), Infected(tc.bigName)},
				{"EICAR after 1 MB", mail(eicar(t), 1<<20), Infected(tc.bigName)},
				{"clean again", mail(nil, 10), Clean},
			} {
				res, err := c.Scan(ctx, bytes.NewReader(sc.msg), int64(len(sc.msg)))
				if err != nil || res != sc.want {
					t.Errorf("%s: got %v, %v; want %v", sc.name, res, err, sc.want)
				}
			}
			idle, _ := c.pool.state()
			if idle != 1 {
				t.Errorf("%d idle connections after sequential scans, want 1 kept alive", idle)
			}
		})
	}
}

func TestRealICAPTextBodyPitfall(t *testing.T) {
	// integration/harness/clamd.go and cicap.go: an .hdb signature matches whole files only; EICAR as a
	// mail's text body is not found, as an attachment it is.
	_, _, icapURL := realDaemons(t)
	c, _ := NewICAP(icapURL, Options{Timeout: 20 * time.Second})
	defer c.Close()
	body := append([]byte("Subject: eicar\r\n\r\n"), eicar(t)...)
	res, err := c.Scan(context.Background(), bytes.NewReader(body), int64(len(body)))
	if err != nil || res.Infected {
		t.Fatalf("got %v, %v: the pitfall is gone, update integration/harness and this test", res, err)
	}
}

func TestRealICAPMaxObjectSizePitfall(t *testing.T) {
	// virus_scan passes objects above MaxObjectSize (5M here) unscanned,
	// echoing them whole: indistinguishable from clean. Hence
	// Config.MaxSize must stay below it, or the service must be called
	// with sizelimit=off.
	realDaemons(t)
	msg := mail(eicar(t), 6<<20)
	for _, tc := range []struct {
		url  string
		want Result
	}{
		{real.icapDefault, Clean},
		{real.icapURL, Infected(eicarName)},
	} {
		c, _ := NewICAP(tc.url, Options{Timeout: 30 * time.Second})
		defer c.Close()
		res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
		if err != nil || res != tc.want {
			t.Fatalf("%s: got %v, %v; want %v (did c-icap change? update the package docs)", tc.url, res, err, tc.want)
		}
	}
}

func TestRealICAPEngineDown(t *testing.T) {
	realDaemons(t)
	ctx := context.Background()
	dir := t.TempDir()

	// (a) clamd dies while c-icap runs: RESPMOD answers 500.
	clamdPort := freePort()
	clamd, err := startClamd(filepath.Join(dir, "clamd"), clamdPort, filepath.Join(dir, "clamd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer clamd.stop()
	port, icapd, err := startCICAP(filepath.Join(dir, "icap-a"), clamdPort)
	if err != nil {
		t.Fatal(err)
	}
	defer icapd.stop()
	c, _ := NewICAP(fmt.Sprintf("icap://127.0.0.1:%d/avsimple", port), Options{Timeout: 10 * time.Second, PingTestVirus: true})
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping with the test virus while all is up: %v", err)
	}
	clamd.stop()
	if _, err := c.options(ctx, true); err != nil {
		t.Fatalf("OPTIONS: %v", err)
	}
	for _, m := range [][]byte{[]byte("hello"), mail(eicar(t), 100<<10)} {
		_, err = c.Scan(ctx, bytes.NewReader(m), int64(len(m)))
		wantKind(t, err, ErrUnavailable)
		if !strings.Contains(err.Error(), "ICAP 500") {
			t.Fatalf("error %q", err)
		}
	}
	wantKind(t, c.Ping(ctx), ErrUnavailable)

	// (b) c-icap started while its clamd was unreachable: virus_scan has no
	// engine and answers 204 to everything until restarted. Only a probe
	// with the test virus notices.
	port, icapd2, err := startCICAP(filepath.Join(dir, "icap-b"), freePort())
	if err != nil {
		t.Fatal(err)
	}
	defer icapd2.stop()
	url := fmt.Sprintf("icap://127.0.0.1:%d/avsimple", port)
	plain, _ := NewICAP(url, Options{Timeout: 10 * time.Second})
	defer plain.Close()
	m := mail(eicar(t), 0)
	if res, err := plain.Scan(ctx, bytes.NewReader(m), int64(len(m))); err != nil || res.Infected {
		t.Fatalf("c-icap without engine: %v, %v (did c-icap stop failing open? update the docs)", res, err)
	}
	if err := plain.Ping(ctx); err != nil {
		t.Fatalf("plain Ping: %v", err)
	}
	strict, _ := NewICAP(url, Options{Timeout: 10 * time.Second, PingTestVirus: true})
	defer strict.Close()
	wantKind(t, strict.Ping(ctx), ErrScanFailed)

	// A wrong service name is no outage but a configuration error.
	c2, _ := NewICAP(fmt.Sprintf("icap://127.0.0.1:%d/nosuch", port), Options{Timeout: 10 * time.Second})
	defer c2.Close()
	_, err = c2.Scan(ctx, strings.NewReader("hello"), 5)
	wantKind(t, err, ErrScanFailed)
}

func TestRealStage(t *testing.T) {
	clamdAddr, _, icapURL := realDaemons(t)
	conv, _ := NewClamd(clamdAddr, Options{Timeout: 10 * time.Second})
	smart, _ := NewICAP(icapURL, Options{Timeout: 10 * time.Second})
	dead, _ := NewICAP(fmt.Sprintf("icap://127.0.0.1:%d/avscan", freePort()), Options{Timeout: 2 * time.Second})
	infected := &content{data: mail(eicar(t), 500)}
	clean := &content{data: mail([]byte("harmless"), 500)}
	run := func(s *Stage, c *content) string {
		fs, err := pipeline.New(s).Run(context.Background(), &pipeline.Transaction{Message: c})
		if err != nil {
			t.Fatal(err)
		}
		return fs[0].Trace()
	}

	s, err := NewStage(Config{Mode: ModeSmart, Smart: smart, Conventional: conv, FallbackToConventional: true, DisableSmartAfter: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := run(s, infected); got != "scan=infected(Eicar-Test-Signature.UNOFFICIAL)" {
		t.Fatalf("smart, EICAR: %s", got)
	}
	if got := run(s, clean); got != "scan=clean(smart)" {
		t.Fatalf("smart, clean: %s", got)
	}

	s2, _ := NewStage(Config{Mode: ModeSmart, Smart: dead, Conventional: conv, FallbackToConventional: true, DisableSmartAfter: 2})
	defer s2.Close()
	if got := run(s2, clean); got != "scan=clean(conventional)" {
		t.Fatalf("smart down, fallback: %s", got)
	}
	if got := run(s2, infected); got != "scan=infected(Eicar-Test-Signature.UNOFFICIAL)" {
		t.Fatalf("smart down, fallback, EICAR: %s", got)
	}
	if h := s2.Health(); h.Active != ModeConventional {
		t.Fatalf("not switched after 2 failures: %+v", h)
	}

	s3, _ := NewStage(Config{Mode: ModeSmart, Smart: dead, Conventional: conv})
	defer s3.Close()
	if got := run(s3, clean); got != "scan=unavailable" {
		t.Fatalf("smart down, no fallback: %s", got)
	}
}
