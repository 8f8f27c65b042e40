package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// NetNS is a network namespace of its own, a stand-in for a container: a
// process started in it sees only its interfaces, and its 127.0.0.1 is its
// own. Connect two with LinkNetNS. Needs root and iproute2's ip.
type NetNS struct {
	Name string
	ip   string // the ip binary
}

// netnsSeq tells apart the namespaces of one test binary; the PID tells
// apart test binaries running at the same time.
var netnsSeq atomic.Int32

// NewNetNS creates a namespace named after the PID with its loopback up. It
// is deleted when the test ends, also after a failure; deleting it also
// removes the veth end inside it.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("harness: NewNetNS must run as root")
	}
	n := &NetNS{Name: fmt.Sprintf("foxproxy-%d-%d", os.Getpid(), netnsSeq.Add(1)), ip: requireBin(t, "ip")}
	if out, err := n.run("netns", "add", n.Name); err != nil {
		t.Fatalf("harness: ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := n.run("netns", "del", n.Name); err != nil {
			t.Errorf("harness: ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	if out, err := n.run("-n", n.Name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("harness: %s: lo up: %v: %s", n.Name, err, out)
	}
	return n
}

func (n *NetNS) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.ip, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// LinkNetNS connects a and b with a veth pair and gives each end its
// address, in CIDR notation (e.g. "198.18.0.1/24"; use 198.18.0.0/15, RFC
// 2544, which exists only inside the namespaces). It returns the names of
// a's and b's ends, for AddAddr.
func LinkNetNS(t testing.TB, a *NetNS, addrA string, b *NetNS, addrB string) (devA, devB string) {
	t.Helper()
	// Interface names have at most 15 bytes; the PID and sequence number
	// keep them unique on the host until they move into their namespaces.
	seq := netnsSeq.Add(1)
	devA, devB = fmt.Sprintf("fx%dv%da", os.Getpid(), seq), fmt.Sprintf("fx%dv%db", os.Getpid(), seq)
	if out, err := a.run("link", "add", devA, "type", "veth", "peer", "name", devB); err != nil {
		t.Fatalf("harness: veth %s-%s: %v: %s", devA, devB, err, out)
	}
	for _, step := range [][]string{
		{"link", "set", devA, "netns", a.Name},
		{"link", "set", devB, "netns", b.Name},
	} {
		if out, err := a.run(step...); err != nil {
			a.run("link", "del", devA) // still on the host: the namespaces' deletion would miss it
			t.Fatalf("harness: ip %s: %v: %s", strings.Join(step, " "), err, out)
		}
	}
	for _, step := range [][]string{
		{"-n", a.Name, "addr", "add", addrA, "dev", devA},
		{"-n", b.Name, "addr", "add", addrB, "dev", devB},
		{"-n", a.Name, "link", "set", devA, "up"},
		{"-n", b.Name, "link", "set", devB, "up"},
	} {
		if out, err := a.run(step...); err != nil {
			t.Fatalf("harness: ip %s: %v: %s", strings.Join(step, " "), err, out)
		}
	}
	return devA, devB
}

// AddAddr gives dev (inside n) one more address, in CIDR notation.
func (n *NetNS) AddAddr(t testing.TB, dev, addr string) {
	t.Helper()
	if out, err := n.run("-n", n.Name, "addr", "add", addr, "dev", dev); err != nil {
		t.Fatalf("harness: %s: addr add %s: %v: %s", n.Name, addr, err, out)
	}
}

// Command runs name with args inside n ("ip netns exec", which execs the
// program: the PID is the program's own).
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, n.ip, append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// RunProcess is RunProcess with bin started inside n.
func (n *NetNS) RunProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	base := filepath.Base(bin)
	p := newProcess(t, base, n.ip, append([]string{"netns", "exec", n.Name, bin}, args...), filepath.Join(tempDir(t, base), base+".log"))
	if err := p.start(); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

// dialTimeout bounds one connection attempt made from inside a namespace.
const dialTimeout = 5 * time.Second

// exchange connects from inside n to addr, writes req, and returns all the
// server sent until it closed; with req nil it only connects. bash's
// /dev/tcp makes the connection, so no other client program is needed.
func (n *NetNS) exchange(addr string, req []byte) ([]byte, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	bash, err := lookBin("bash")
	if err != nil {
		return nil, err
	}
	script := `exec 3<>"/dev/tcp/$1/$2"`
	if req != nil {
		script += `; cat >&3; cat <&3`
	}
	c := n.Command(ctx, bash, "-c", script, "exchange", host, port)
	c.Stdin = bytes.NewReader(req)
	c.WaitDelay = time.Second // a killed bash's cat may hold the output open
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("%s from namespace %s: %v: %s", addr, n.Name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// WaitPort waits until addr accepts TCP connections from inside n, or fails
// the test.
func (n *NetNS) WaitPort(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := n.waitPort(addr, timeout, nil); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

func (n *NetNS) waitPort(addr string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := n.exchange(addr, nil)
		if err == nil {
			return nil
		}
		if alive != nil {
			if aerr := alive(); aerr != nil {
				return fmt.Errorf("%s never accepted a connection: %w", addr, aerr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %v", addr, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// HTTPGet asks url (http://HOST:PORT/path) from inside n, with an
// HTTP/1.0 request so that the server closes the connection after its
// answer, and returns the status code and the body (at most 16 MiB).
func (n *NetNS) HTTPGet(t testing.TB, url, accept string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "GET %s HTTP/1.0\r\nHost: %s\r\n", req.URL.RequestURI(), req.URL.Host)
	for k, v := range req.Header {
		fmt.Fprintf(&raw, "%s: %s\r\n", k, v[0])
	}
	raw.WriteString("\r\n")
	out, err := n.exchange(req.URL.Host, raw.Bytes())
	if err != nil {
		t.Fatalf("harness: GET %s: %v", url, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), req)
	if err != nil {
		t.Fatalf("harness: GET %s: %v in %q", url, err, clipBytes(out, 300))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("harness: GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
