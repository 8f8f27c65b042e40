// Package pgtest starts a private PostgreSQL 15 for tests: Debian's server
// binaries, a temporary data directory, trust authentication, listening
// only on a free loopback port, its unix socket in that directory (so
// several run side by side). Run as root, the server runs as the postgres
// user, which PostgreSQL requires.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BinDir holds Debian's PostgreSQL 15 server binaries (package postgresql-15).
const BinDir = "/usr/lib/postgresql/15/bin"

// Server is one running test instance.
type Server struct {
	t    testing.TB
	dir  string
	port int
	// URL connects to its database "foxproxy" as the superuser postgres.
	URL string
}

// Start starts a server and returns its URL and a stop func (also run
// at the test's cleanup; calling it twice is harmless).
func Start(t testing.TB) (url string, stop func()) {
	s := StartServer(t)
	return s.URL, s.Close
}

// StartServer starts a server, stopped and removed at the test's cleanup.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(BinDir, "initdb")); err != nil {
		t.Fatalf("PostgreSQL 15 server binaries not found in %s (apt-get install postgresql-15): %v", BinDir, err)
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir}
	t.Cleanup(s.Close)
	if err := s.chownToServer(); err != nil {
		t.Fatal(err)
	}
	if out, err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// A free port can be taken between choosing and binding it: try a
	// few.
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		if err := s.Restart(); err == nil {
			break
		} else if attempt == 4 {
			t.Fatalf("start PostgreSQL: %v", err)
		}
	}
	if out, err := s.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres", "foxproxy"); err != nil {
		t.Fatalf("createdb: %v\n%s", err, out)
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/foxproxy?sslmode=disable&connect_timeout=5", s.port)
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// Restart starts the stopped server again on its port (the port and socket
// directory are options of the start, not of postgresql.conf).
func (s *Server) Restart() error {
	opts := fmt.Sprintf("-k %s -c listen_addresses=127.0.0.1 -p %d -c fsync=off", s.dir, s.port)
	out, err := s.run("pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

// Stop stops the server with pg_ctl's mode: "immediate" is a crash (what
// recovery must survive), "fast" an orderly stop.
func (s *Server) Stop(mode string) {
	s.t.Helper()
	if out, err := s.run("pg_ctl", "-D", s.data(), "-m", mode, "-w", "stop"); err != nil {
		s.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Close stops the server if it runs and removes its directory.
func (s *Server) Close() {
	if s.dir == "" {
		return
	}
	if _, err := os.Stat(filepath.Join(s.data(), "postmaster.pid")); err == nil {
		s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	}
	os.RemoveAll(s.dir)
	s.dir = ""
}

// run runs one of the server's binaries, as the postgres user when root.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bin := filepath.Join(BinDir, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		q := []string{shellQuote(bin)}
		for _, a := range args {
			q = append(q, shellQuote(a))
		}
		cmd = exec.CommandContext(ctx, "su", "postgres", "-s", "/bin/sh", "-c", strings.Join(q, " "))
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	// pg_ctl's server must not keep our output pipes open (it logs to -l).
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// chownToServer gives the directory to the postgres user when root.
func (s *Server) chownToServer() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return err
	}
	return os.Chown(s.dir, uid, gid)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
