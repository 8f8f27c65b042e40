// Package pgtest starts a private PostgreSQL server for tests: Debian's
// PostgreSQL 15 binaries, a cluster in a temporary directory, listening on
// a free loopback port and its own socket directory, so that tests (and
// several engineers' test runs) never share a server or touch the system's
// cluster. Tests stop, kill and start it again to fake a database outage.
//
// The server runs as a child of the test process (postgres in its own
// process group, not daemonized by pg_ctl), so it is stopped by the PID the
// test started and never outlives the test.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian's postgresql-15 package puts the server binaries.
var BinDir = "/usr/lib/postgresql/15/bin"

// startTimeout bounds a server start, crash recovery included.
const startTimeout = 60 * time.Second

// Server is one private PostgreSQL server.
type Server struct {
	dir  string // owned by the server's user; holds data/, the socket and the log
	port int
	cred *syscall.Credential // nil: run as ourselves (not root)
	opts Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start is Launch for a test: the server is stopped and its directory
// removed when the test ends. A missing PostgreSQL fails the test: the
// test dependencies include it.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Options change how the server runs.
type Options struct {
	// Durable keeps PostgreSQL's own defaults for durability and memory
	// (fsync on, shared_buffers 128MB), as a production server runs: for
	// benchmarks, whose numbers must include the cost of a durable commit.
	// Tests leave it off: see Restart.
	Durable bool
}

// Launch initialises a cluster and starts its server, with a database
// "foxproxy" and trust authentication for user postgres on 127.0.0.1 only.
// Close stops it (for a server shared by a package's tests, from TestMain).
func Launch() (s *Server, err error) { return LaunchWith(Options{}) }

// LaunchWith is Launch with options.
func LaunchWith(opts Options) (s *Server, err error) {
	if _, err := os.Stat(filepath.Join(BinDir, "postgres")); err != nil {
		return nil, fmt.Errorf("pgtest: PostgreSQL 15 is not installed (%v); run scripts/install-test-deps.sh", err)
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s = &Server{dir: dir, opts: opts}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Getuid() == 0 {
		// initdb and postgres refuse to run as root: run them as the
		// package's postgres user, which must own the directory.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user of the postgresql package: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(BinDir, "initdb"), "-D", s.dataDir(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.urlFor("postgres"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE foxproxy"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return s, nil
}

// Close kills the server and removes its directory.
func (s *Server) Close() {
	s.Kill()
	os.RemoveAll(s.dir)
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// URL is the connection URL of the database "foxproxy".
func (s *Server) URL() string { return s.urlFor("foxproxy") }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// LogFile is the server's log (stderr), appended to across restarts.
func (s *Server) LogFile() string { return filepath.Join(s.dir, "postgres.log") }

func (s *Server) urlFor(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Restart starts the server (again, after Stop or Kill) with the same
// port and directories, and waits until it accepts connections: after a
// Kill that includes crash recovery (the WAL is replayed).
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.done:
		default:
			return errors.New("pgtest: the server is running")
		}
	}
	logf, err := os.OpenFile(s.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	if s.cred != nil {
		os.Chown(s.LogFile(), int(s.cred.Uid), int(s.cred.Gid))
	}
	deadline := time.Now().Add(startTimeout)
	for {
		args := []string{"-D", s.dataDir(), "-k", s.dir,
			"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(s.port), "-c", "max_connections=60"}
		if !s.opts.Durable {
			args = append(args,
				// Small enough for several servers side by side.
				"-c", "shared_buffers=16MB",
				// Tests kill the server, never the machine: what PostgreSQL
				// wrote reaches the kernel either way, and a commit is as
				// final after a SIGKILL with fsync off as with it on. fsync
				// would only make every test wait for the disk.
				"-c", "fsync=off")
		}
		cmd := exec.Command(filepath.Join(BinDir, "postgres"), args...)
		cmd.Dir = s.dir
		cmd.Stdout, cmd.Stderr = logf, logf
		// Its own process group, so Kill takes the backends too, as a
		// crash of the whole server would.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		s.cmd, s.done = cmd, done
		err := s.waitReady(done, deadline)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			// Exited at once: after a kill, the old backends may still hold
			// the shared memory for a moment. Try again until the deadline.
			if time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				continue
			}
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log, _ := os.ReadFile(s.LogFile())
		return fmt.Errorf("pgtest: server did not start: %v\n%s", err, tail(log, 2000))
	}
}

func (s *Server) waitReady(done chan struct{}, deadline time.Time) error {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.urlFor("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-done:
			return errors.New("the server exited")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// Stop shuts the server down in order (SIGINT: PostgreSQL's fast shutdown,
// which aborts open transactions) and waits for it; SIGKILL after 30 s.
func (s *Server) Stop() { s.signal(syscall.SIGINT, 30*time.Second) }

// Kill kills the server and its backends at once (SIGKILL to its process
// group): a crash in the middle of whatever it was doing. Restart replays
// the WAL.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 0) }

func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	pid := s.cmd.Process.Pid
	if sig == syscall.SIGKILL {
		syscall.Kill(-pid, sig)
	} else {
		syscall.Kill(pid, sig)
	}
	if wait > 0 {
		select {
		case <-s.done:
		case <-time.After(wait):
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	<-s.done
	if sig == syscall.SIGKILL {
		// The backends were killed with the postmaster; wait until none is
		// left, so a Restart does not race their exit.
		waitGroupGone(pid, 10*time.Second)
	}
}

// waitGroupGone waits until no process is left in process group pgid.
func waitGroupGone(pgid int, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
