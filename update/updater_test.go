package update

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/internal/testutil"
	"github.com/foxproxy/foxproxy/lists"
)

var testPub, testPriv, _ = ed25519.GenerateKey(nil)

// bundle builds a signed bundle from list contents via Build.
func bundle(t *testing.T, version string, created time.Time, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, _, err := Build(dir, version, created, testPriv)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rawBundle packs a bundle by hand: manifest from the given infos (or the
// files' true sums where info is nil), signed with key.
func rawBundle(t *testing.T, key ed25519.PrivateKey, version string, files map[string]string, lie map[string]FileInfo) []byte {
	t.Helper()
	m := Manifest{Version: version, Created: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), Files: map[string]FileInfo{}}
	contents := map[string][]byte{}
	for name, c := range files {
		sum := sha256.Sum256([]byte(c))
		m.Files[name] = FileInfo{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(c))}
		contents[name] = []byte(c)
	}
	for name, fi := range lie {
		m.Files[name] = fi
	}
	mb, _ := json.Marshal(m)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, mb))
	raw, err := Pack(map[string][]byte{ManifestName: mb, SignatureName: []byte(sig)}, contents)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// server serves one bundle with an ETag, and can misbehave.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	status   int  // != 0: answer this instead
	truncate bool // promise the whole body, send half, cut the connection
	down     bool // cut every connection at once
	gets     int
	notMod   int
}

func newServer(t *testing.T, body []byte) *server {
	s := &server{body: body}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *server) set(f func(s *server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, status, truncate, down := s.body, s.status, s.truncate, s.down
	s.gets++
	s.mu.Unlock()
	if down {
		panic(http.ErrAbortHandler)
	}
	if status != 0 {
		http.Error(w, "broken", status)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if r.Header.Get("If-None-Match") == etag {
		s.mu.Lock()
		s.notMod++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if truncate {
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	w.Write(body)
}

func newUpdater(t *testing.T, s *server, dir string, h *lists.Holder) (*Updater, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	u, err := New(Config{URL: s.URL + "/bundle.tar.gz", PublicKey: testPub, StateDir: dir, Holder: h,
		Interval: time.Hour, MinBackoff: 20 * time.Millisecond, Timeout: 5 * time.Second,
		Transport: s.Client().Transport, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u, logs
}

func blocked(h *lists.Holder, a string) bool {
	_, ok := h.Current().ClientBlocked(netip.MustParseAddr(a))
	return ok
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func TestUpdateSwapsAndNotModified(t *testing.T) {
	v1 := bundle(t, "v1", t0, map[string]string{"blocked_clients": "192.0.2.1\n", "blocked_urls": "evil.example\n"})
	s := newServer(t, v1)
	dir := t.TempDir()
	h := lists.NewHolder()
	u, _ := newUpdater(t, s, dir, h)

	res, err := u.UpdateNow(context.Background())
	if err != nil || !res.Changed || res.NewVersion != "v1" {
		t.Fatalf("first update: %+v, %v", res, err)
	}
	if !blocked(h, "192.0.2.1") {
		t.Error("v1's lists are not in force")
	}
	// The bundle was stored as received, with no temporary file left.
	if got, err := os.ReadFile(filepath.Join(dir, StateFile)); err != nil || string(got) != string(v1) {
		t.Errorf("state file differs from the bundle (%v)", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("state dir holds %d entries, want 1", len(ents))
	}

	// Same ETag: 304, nothing changes.
	res, err = u.UpdateNow(context.Background())
	if err != nil || res.Changed || !res.NotModified {
		t.Fatalf("second update: %+v, %v", res, err)
	}
	if s.notMod != 1 {
		t.Errorf("server answered 304 %d times, want 1", s.notMod)
	}

	// A new bundle replaces the old one; in-flight snapshots keep theirs.
	before := h.Current()
	s.set(func(s *server) {
		s.body = bundle(t, "v2", t0.Add(time.Hour), map[string]string{"blocked_clients": "192.0.2.2\n192.0.2.3\n"})
	})
	res, err = u.UpdateNow(context.Background())
	if err != nil || !res.Changed || res.OldVersion != "v1" || res.NewVersion != "v2" {
		t.Fatalf("third update: %+v, %v", res, err)
	}
	if blocked(h, "192.0.2.1") || !blocked(h, "192.0.2.2") {
		t.Error("v2's lists are not in force")
	}
	if _, ok := before.ClientBlocked(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Error("a snapshot taken before the swap changed")
	}
	changes := map[string]lists.Change{}
	for _, c := range res.Changes {
		changes[c.List] = c
	}
	if c := changes["blocked_clients"]; c.Added != 2 || c.Removed != 1 {
		t.Errorf("blocked_clients change %+v", c)
	}
	if c := changes["blocked_urls"]; c.Added != 0 || c.Removed != 1 {
		t.Errorf("blocked_urls change %+v", c)
	}
	st := u.Status()
	if st.Version != "v2" || st.ConsecutiveFailures != 0 || st.Entries["blocked_clients"] != 2 || !st.Created.Equal(t0.Add(time.Hour)) {
		t.Errorf("status %+v", st)
	}
}

func TestUpdateRejectsBadBundles(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(nil)
	good := map[string]string{"blocked_clients.txt": "192.0.2.50\n"}
	cases := []struct {
		name   string
		prep   func(s *server)
		reason string
	}{
		{"5xx", func(s *server) { s.status = http.StatusServiceUnavailable }, ReasonHTTP},
		{"404", func(s *server) { s.status = http.StatusNotFound }, ReasonHTTP},
		{"truncated download", func(s *server) {
			s.body = bundle(t, "v9", t0.Add(9*time.Hour), map[string]string{"blocked_clients": strings.Repeat("192.0.2.50\n", 2000)})
			s.truncate = true
		}, ReasonTruncated},
		{"truncated file", func(s *server) {
			b := bundle(t, "v9", t0.Add(9*time.Hour), map[string]string{"blocked_clients": strings.Repeat("192.0.2.50\n", 2000)})
			s.body = b[:len(b)*2/3]
		}, ReasonTruncated},
		{"not gzip", func(s *server) { s.body = []byte("<html>maintenance</html>") }, ReasonTruncated},
		{"wrong hash", func(s *server) {
			s.body = rawBundle(t, testPriv, "v9", good, map[string]FileInfo{"blocked_clients.txt": {SHA256: strings.Repeat("00", 32), Size: 11}})
		}, ReasonHash},
		{"wrong size", func(s *server) {
			sum := sha256.Sum256([]byte(good["blocked_clients.txt"]))
			s.body = rawBundle(t, testPriv, "v9", good, map[string]FileInfo{"blocked_clients.txt": {SHA256: hex.EncodeToString(sum[:]), Size: 12}})
		}, ReasonHash},
		{"signed by another key", func(s *server) { s.body = rawBundle(t, otherKey, "v9", good, nil) }, ReasonSignature},
		{"signature over other bytes", func(s *server) {
			b := rawBundle(t, testPriv, "v9", good, nil)
			// Same files, but the manifest re-serialised: one byte differs.
			s.body = repack(t, b, func(m map[string][]byte) { m[ManifestName] = append(m[ManifestName], '\n') })
		}, ReasonSignature},
		{"no signature", func(s *server) {
			s.body = repack(t, rawBundle(t, testPriv, "v9", good, nil), func(m map[string][]byte) { delete(m, SignatureName) })
		}, ReasonSignature},
		{"malformed list", func(s *server) {
			s.body = rawBundle(t, testPriv, "v9", map[string]string{"blocked_clients.txt": "192.0.2.50\n192.0.2.999\n"}, nil)
		}, ReasonMalformed},
		{"unknown list", func(s *server) {
			s.body = rawBundle(t, testPriv, "v9", map[string]string{"friends.txt": "192.0.2.50\n"}, nil)
		}, ReasonManifest},
		{"file not in manifest", func(s *server) {
			s.body = repack(t, rawBundle(t, testPriv, "v9", good, nil), func(m map[string][]byte) { m["approved_clients.txt"] = []byte("0.0.0.0/0\n") })
		}, ReasonManifest},
		{"older than in force", func(s *server) {
			s.body = bundle(t, "v0", t0.Add(-time.Hour), map[string]string{"blocked_clients": "192.0.2.50\n"})
		}, ReasonOlder},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(t, bundle(t, "v1", t0, map[string]string{"blocked_clients": "192.0.2.1\n"}))
			dir := t.TempDir()
			h := lists.NewHolder()
			u, logs := newUpdater(t, s, dir, h)
			if _, err := u.UpdateNow(context.Background()); err != nil {
				t.Fatal(err)
			}
			stored, _ := os.ReadFile(filepath.Join(dir, StateFile))

			s.set(c.prep)
			for range 2 {
				_, err := u.UpdateNow(context.Background())
				if got := ReasonOf(err); got != c.reason {
					t.Fatalf("reason %q (%v), want %q", got, err, c.reason)
				}
			}
			if !blocked(h, "192.0.2.1") || blocked(h, "192.0.2.50") {
				t.Error("the lists in force changed")
			}
			if now, _ := os.ReadFile(filepath.Join(dir, StateFile)); string(now) != string(stored) {
				t.Error("the stored bundle changed")
			}
			st := u.Status()
			if st.Version != "v1" || st.ConsecutiveFailures != 2 || st.LastReason != c.reason || st.Failures[c.reason] != 2 {
				t.Errorf("status %+v", st)
			}
			// Logged once for the state change, not per attempt.
			if n := logs.FilterMessage("list update failed; keeping the lists in force").Len(); n != 1 {
				t.Errorf("failure logged %d times, want 1", n)
			}
		})
	}
}

// repack rewrites a bundle's files.
func repack(t *testing.T, raw []byte, edit func(map[string][]byte)) []byte {
	t.Helper()
	files := unpack(t, raw)
	edit(files)
	out, err := Pack(nil, files)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestServerDownRetriesWithBackoff(t *testing.T) {
	s := newServer(t, bundle(t, "v1", t0, map[string]string{"blocked_clients": "192.0.2.1\n"}))
	h := lists.NewHolder()
	u, logs := newUpdater(t, s, t.TempDir(), h)
	if _, err := u.UpdateNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]time.Duration{0: time.Hour, 1: 20 * time.Millisecond, 2: 40 * time.Millisecond,
		3: 80 * time.Millisecond, 30: time.Hour} {
		if got := u.Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}

	s.set(func(s *server) {
		s.down = true
		s.body = bundle(t, "v2", t0.Add(time.Hour), map[string]string{"blocked_clients": "192.0.2.2\n"})
	})
	u.Start()
	waitFor(t, "three failed attempts", func() bool { return u.Status().ConsecutiveFailures >= 3 })
	st := u.Status()
	if st.LastReason != ReasonUnreachable || !blocked(h, "192.0.2.1") {
		t.Errorf("while down: status %+v", st)
	}
	// The next attempt is scheduled by the backoff, not the hour.
	if wait := st.NextAttempt.Sub(st.LastAttempt); wait > time.Minute {
		t.Errorf("next attempt %v after the last failure", wait)
	}
	if n := logs.FilterMessage("list update failed; keeping the lists in force").Len(); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}

	// The server comes back: the next retry catches up by itself.
	s.set(func(s *server) { s.down = false })
	waitFor(t, "recovery", func() bool { return u.Status().Version == "v2" })
	if !blocked(h, "192.0.2.2") || u.Status().ConsecutiveFailures != 0 {
		t.Errorf("after recovery: %+v", u.Status())
	}
	if logs.FilterMessage("list update works again").Len() != 1 {
		t.Error("recovery not logged")
	}
}

func TestRestartLoadsLastGoodBundleOffline(t *testing.T) {
	s := newServer(t, bundle(t, "v1", t0, map[string]string{"approved_senders": "partner.example\n"}))
	dir := t.TempDir()
	u, _ := newUpdater(t, s, dir, lists.NewHolder())
	if _, err := u.UpdateNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	u.Close()
	s.Close() // no network from here on

	h := lists.NewHolder()
	u2, _ := newUpdater(t, s, dir, h)
	if err := u2.LoadState(); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Current().SenderApproved("x@partner.example"); !ok {
		t.Error("the stored bundle's lists are not in force after a restart")
	}
	if st := u2.Status(); st.Version != "v1" || !st.LastAttempt.IsZero() {
		t.Errorf("status %+v", st)
	}
	// The network is down: the attempt fails, the stored lists stay.
	if _, err := u2.UpdateNow(context.Background()); ReasonOf(err) != ReasonUnreachable {
		t.Errorf("err = %v", err)
	}
	if _, ok := h.Current().SenderApproved("x@partner.example"); !ok {
		t.Error("a failed attempt dropped the stored lists")
	}

	// A state file that does not verify is reported and not installed.
	os.WriteFile(filepath.Join(dir, StateFile), []byte("garbage"), 0o644)
	h3 := lists.NewHolder()
	u3, _ := newUpdater(t, s, dir, h3)
	if err := u3.LoadState(); err == nil || !h3.Current().Empty() {
		t.Errorf("a corrupt state file: err %v", err)
	}
}

func TestStateDirWatchTakesOverCLIUpdate(t *testing.T) {
	s := newServer(t, bundle(t, "v1", t0, map[string]string{"blocked_clients": "192.0.2.1\n"}))
	dir := t.TempDir()
	h := lists.NewHolder()
	u, _ := newUpdater(t, s, dir, h)
	u.Start()
	waitFor(t, "v1", func() bool { return u.Status().Version == "v1" })

	// Another process (foxproxy update) stores a newer bundle.
	v2 := bundle(t, "v2", t0.Add(time.Hour), map[string]string{"blocked_clients": "192.0.2.2\n"})
	if err := writeAtomic(dir, StateFile, v2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2 from the state dir", func() bool { return blocked(h, "192.0.2.2") })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, 10*time.Second, cond)
}
