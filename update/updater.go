package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/lists"
)

// StateFile is the last good bundle's name in the state directory.
const StateFile = "bundle.tar.gz"

// Defaults for Config.
const (
	DefaultInterval   = time.Hour
	DefaultTimeout    = 2 * time.Minute
	DefaultMaxBytes   = 256 << 20
	DefaultMinBackoff = 30 * time.Second
)

// Config configures an Updater.
type Config struct {
	// URL serves the bundle (https).
	URL string
	// PublicKey verifies the manifest's signature.
	PublicKey ed25519.PublicKey
	// Interval between polls; failures retry after MinBackoff, doubling
	// up to Interval.
	Interval   time.Duration
	MinBackoff time.Duration
	// Timeout bounds one download; MaxBytes its size (and the unpacked
	// content's).
	Timeout  time.Duration
	MaxBytes int64
	// StateDir keeps the last good bundle (StateFile).
	StateDir string
	// CAFile adds PEM certificates to the system roots.
	CAFile string
	// Holder receives the bundle's lists (as lists.FromUpdate).
	Holder *lists.Holder
	Logger *zap.Logger
	// Transport replaces the HTTP transport (tests); CAFile then does not
	// apply.
	Transport http.RoundTripper
}

// Status is the updater's state for /status and metrics.
type Status struct {
	URL string `json:"url"`
	// Version and Created are the bundle in force ("" and zero: none);
	// Installed is when it was swapped in.
	Version   string    `json:"version,omitempty"`
	Created   time.Time `json:"created,omitzero"`
	Installed time.Time `json:"installed,omitzero"`
	// Entries counts the bundle's entries per list.
	Entries map[string]int `json:"entries,omitempty"`

	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"` // last attempt that ended with a current bundle (200 or 304)
	LastError   string    `json:"last_error,omitempty"`
	LastReason  string    `json:"last_reason,omitempty"`
	// ConsecutiveFailures since the last success; NextAttempt is when the
	// next poll is due.
	ConsecutiveFailures int       `json:"consecutive_failures"`
	NextAttempt         time.Time `json:"next_attempt,omitzero"`
	// Failures counts failed attempts by reason since start.
	Failures map[string]uint64 `json:"failures,omitempty"`
}

// Result says what one attempt did.
type Result struct {
	// Changed is true when a new bundle was installed.
	Changed    bool
	OldVersion string
	NewVersion string
	// NotModified is true when the server answered 304.
	NotModified bool
	Changes     []lists.Change
}

// Updater polls for bundles and installs good ones.
type Updater struct {
	cfg    Config
	client *http.Client
	log    *zap.Logger

	attempt sync.Mutex // one attempt at a time

	mu      sync.Mutex
	st      Status
	current *Bundle
	etag    string

	done     chan struct{}
	finished chan struct{}
	kick     chan struct{}
	started  atomic.Bool
}

// New returns an updater; it does nothing until LoadState or Start.
func New(cfg Config) (*Updater, error) {
	if cfg.URL == "" || len(cfg.PublicKey) != ed25519.PublicKeySize || cfg.StateDir == "" || cfg.Holder == nil {
		return nil, errors.New("update: URL, public key, state dir and holder are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MinBackoff > cfg.Interval {
		cfg.MinBackoff = cfg.Interval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CAFile != "" {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("update: ca_file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("update: ca_file %s holds no PEM certificate", cfg.CAFile)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		tr = t
	}
	u := &Updater{
		cfg:      cfg,
		client:   &http.Client{Transport: tr},
		log:      cfg.Logger,
		done:     make(chan struct{}),
		finished: make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}
	u.st.URL = cfg.URL
	u.st.Failures = map[string]uint64{}
	return u, nil
}

func (u *Updater) statePath() string { return filepath.Join(u.cfg.StateDir, StateFile) }

// LoadState installs the last good bundle from the state directory, with
// no network access: after a restart the lists are back before the first
// poll. No file is not an error; a file that does not verify is (and is
// left alone for the next good download to replace).
func (u *Updater) LoadState() error {
	u.attempt.Lock()
	defer u.attempt.Unlock()
	raw, err := os.ReadFile(u.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	b, err := Parse(raw, u.cfg.PublicKey, u.cfg.MaxBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", u.statePath(), err)
	}
	u.mu.Lock()
	same := u.current != nil && bytes.Equal(u.current.ManifestBytes, b.ManifestBytes)
	older := u.current != nil && b.Manifest.Created.Before(u.current.Manifest.Created)
	u.mu.Unlock()
	if same || older {
		return nil
	}
	u.install(b)
	u.log.Info("list bundle loaded from the state directory", zap.String("version", b.Manifest.Version),
		zap.Time("created", b.Manifest.Created), zap.String("file", u.statePath()))
	return nil
}

func (u *Updater) install(b *Bundle) {
	u.cfg.Holder.Replace(lists.FromUpdate, b.Lists)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.current = b
	u.st.Version, u.st.Created, u.st.Installed = b.Manifest.Version, b.Manifest.Created, time.Now()
	u.st.Entries = map[string]int{}
	for _, k := range lists.Kinds() {
		u.st.Entries[k.String()] = b.Lists.Len(k)
	}
}

// Current returns the bundle in force (nil: none).
func (u *Updater) Current() *Bundle {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.current
}

// UpdateNow runs one attempt: download, verify, store, swap. On any
// failure the lists in force stay.
func (u *Updater) UpdateNow(ctx context.Context) (Result, error) {
	u.attempt.Lock()
	defer u.attempt.Unlock()
	res, err := u.try(ctx)
	u.record(res, err)
	return res, err
}

func (u *Updater) try(ctx context.Context) (Result, error) {
	u.mu.Lock()
	cur, etag := u.current, u.etag
	u.mu.Unlock()
	res := Result{}
	if cur != nil {
		res.OldVersion = cur.Manifest.Version
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.cfg.URL, nil)
	if err != nil {
		return res, fail(ReasonUnreachable, "%v", err)
	}
	if etag != "" && cur != nil {
		req.Header.Set("If-None-Match", etag)
	}
	req.Header.Set("User-Agent", "foxproxy-update")
	resp, err := u.client.Do(req)
	if err != nil {
		return res, fail(ReasonUnreachable, "%v", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		res.NotModified, res.NewVersion = true, res.OldVersion
		return res, nil
	case http.StatusOK:
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return res, fail(ReasonHTTP, "server answered %s", resp.Status)
	}
	if resp.ContentLength > u.cfg.MaxBytes {
		return res, fail(ReasonTooLarge, "bundle of %d bytes is over max_bytes (%d)", resp.ContentLength, u.cfg.MaxBytes)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, u.cfg.MaxBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return res, fail(ReasonUnreachable, "download: %v", err)
		}
		return res, fail(ReasonTruncated, "download: %v", err)
	}
	if int64(len(raw)) > u.cfg.MaxBytes {
		return res, fail(ReasonTooLarge, "bundle over max_bytes (%d)", u.cfg.MaxBytes)
	}
	b, err := Parse(raw, u.cfg.PublicKey, u.cfg.MaxBytes)
	if err != nil {
		return res, err
	}
	newETag := resp.Header.Get("ETag")
	if cur != nil && bytes.Equal(cur.ManifestBytes, b.ManifestBytes) {
		u.mu.Lock()
		u.etag = newETag
		u.mu.Unlock()
		res.NewVersion = res.OldVersion
		return res, nil
	}
	if cur != nil && b.Manifest.Created.Before(cur.Manifest.Created) {
		return res, fail(ReasonOlder, "bundle %s (created %s) is older than %s in force (created %s)",
			b.Manifest.Version, b.Manifest.Created.Format(time.RFC3339), cur.Manifest.Version, cur.Manifest.Created.Format(time.RFC3339))
	}
	if err := writeAtomic(u.cfg.StateDir, StateFile, raw); err != nil {
		return res, &Error{Reason: ReasonState, Err: err}
	}
	var old *lists.Set
	if cur != nil {
		old = cur.Lists
	}
	u.install(b)
	u.mu.Lock()
	u.etag = newETag
	u.mu.Unlock()
	res.Changed, res.NewVersion = true, b.Manifest.Version
	res.Changes = lists.Diff(old, b.Lists)
	return res, nil
}

// record updates the status and logs a change of state once.
func (u *Updater) record(res Result, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	u.st.LastAttempt = now
	if err != nil {
		reason := ReasonOf(err)
		if reason == "" {
			reason = "other"
		}
		u.st.Failures[reason]++
		u.st.ConsecutiveFailures++
		if u.st.LastReason != reason {
			u.log.Warn("list update failed; keeping the lists in force", zap.String("url", u.cfg.URL),
				zap.String("reason", reason), zap.Error(err), zap.String("version", u.st.Version))
		}
		u.st.LastError, u.st.LastReason = err.Error(), reason
		return
	}
	if u.st.LastReason != "" {
		u.log.Info("list update works again", zap.String("url", u.cfg.URL), zap.Int("failed_attempts", u.st.ConsecutiveFailures))
	}
	u.st.LastSuccess, u.st.LastError, u.st.LastReason, u.st.ConsecutiveFailures = now, "", "", 0
	if res.Changed {
		u.log.Info("list bundle installed", zap.String("from", res.OldVersion), zap.String("to", res.NewVersion))
	}
}

// Backoff is the wait after n consecutive failures: MinBackoff doubled
// each time, at most Interval.
func (u *Updater) Backoff(n int) time.Duration {
	if n <= 0 {
		return u.cfg.Interval
	}
	d := u.cfg.MinBackoff
	for i := 1; i < n && d < u.cfg.Interval; i++ {
		d *= 2
	}
	return min(d, u.cfg.Interval)
}

// Status returns a snapshot of the state.
func (u *Updater) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	st.Failures = make(map[string]uint64, len(u.st.Failures))
	for k, v := range u.st.Failures {
		st.Failures[k] = v
	}
	return st
}

// Start polls in the background: at once, then every Interval, sooner
// after a failure. It also watches the state directory, so a bundle that
// `foxproxy update` stored is taken over without waiting for the next poll.
func (u *Updater) Start() {
	if u.started.Swap(true) {
		return
	}
	if err := os.MkdirAll(u.cfg.StateDir, 0o755); err != nil {
		u.log.Warn("cannot create the update state directory", zap.Error(err))
	}
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		if err = fw.Add(u.cfg.StateDir); err != nil {
			fw.Close()
			fw = nil
		}
	}
	if err != nil {
		u.log.Warn("not watching the update state directory", zap.Error(err))
	}
	go u.run(fw)
}

func (u *Updater) run(fw *fsnotify.Watcher) {
	defer close(u.finished)
	var events <-chan fsnotify.Event
	if fw != nil {
		defer fw.Close()
		events = fw.Events
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-u.done
		cancel()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-u.done:
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Base(ev.Name) == StateFile && ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename) != 0 {
				if err := u.LoadState(); err != nil {
					u.log.Warn("the bundle in the state directory does not verify; ignoring it", zap.Error(err))
				}
			}
			continue
		case <-u.kick:
		case <-timer.C:
		}
		u.UpdateNow(ctx)
		u.mu.Lock()
		wait := u.Backoff(u.st.ConsecutiveFailures)
		u.st.NextAttempt = time.Now().Add(wait)
		u.mu.Unlock()
		timer.Reset(wait)
	}
}

// Kick asks the running updater for an attempt now.
func (u *Updater) Kick() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// Close stops polling and waits for an attempt in progress to end.
func (u *Updater) Close() {
	select {
	case <-u.done:
		return
	default:
	}
	close(u.done)
	if !u.started.Load() {
		return
	}
	select {
	case <-u.finished:
	case <-time.After(u.cfg.Timeout + time.Second):
	}
}

// writeAtomic replaces dir/name with data so that a crash leaves the old
// file or the new one, never a mix: a temporary file in the same
// directory, fsynced, renamed over the old one, then the directory fsynced
// so the rename itself is durable.
func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
