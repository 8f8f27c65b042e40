package reputation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults for FeedbackConfig.
const (
	DefaultFeedbackQueueSize    = 10000
	DefaultFeedbackBatchSize    = 100
	DefaultFeedbackMaxDelay     = 5 * time.Second
	DefaultFeedbackTimeout      = 10 * time.Second
	DefaultFeedbackMaxAttempts  = 5
	DefaultFeedbackRetryBackoff = time.Second
	DefaultFeedbackFlushTimeout = 5 * time.Second
	// maxFeedbackBackoff caps the doubling retry wait.
	maxFeedbackBackoff = time.Minute
)

// Verdicts of a FeedbackEntry.
const (
	VerdictListed  = "listed"  // some backend listed the URL, its domain, host or address
	VerdictClean   = "clean"   // every backend answered and none listed it
	VerdictUnknown = "unknown" // not listed, but a backend failed or was skipped
)

// FeedbackEntry is one URL seen in one message and WRS's verdict on it,
// one JSON object in the sinks.
type FeedbackEntry struct {
	Time time.Time `json:"time"`
	// Message is foxproxy's ID of the message, QueueID the upstream
	// Postfix queue ID, when known.
	Message string `json:"message,omitempty"`
	QueueID string `json:"queue_id,omitempty"`
	// URL is the normalised URL; Host its host.
	URL  string `json:"url"`
	Host string `json:"host"`
	// Verdict is VerdictListed, VerdictClean or VerdictUnknown.
	Verdict string `json:"verdict"`
	// Categories and Lists (the backends that listed it) are set when
	// Verdict is listed.
	Categories []string `json:"categories,omitempty"`
	Lists      []string `json:"lists,omitempty"`
}

// FeedbackConfig configures a Feedback reporter (failure table row 3, README.md). At
// least one sink, URL or File, is needed. Each sink has its own queue and
// worker, so a sink that is down holds back only itself.
type FeedbackConfig struct {
	// URL receives each batch as a JSON array of FeedbackEntry in an
	// HTTP POST. A 2xx answer is success; a 4xx other than 408 and 429
	// drops the batch at once (retrying cannot help); anything else,
	// a timeout or a refused connection is retried.
	URL string
	// Header is added to every POST (e.g. Authorization).
	Header http.Header
	// File gets each entry appended as one JSON line. It is opened for
	// each batch with O_APPEND (created with mode 0600), so log rotation
	// needs no signal.
	File string
	// QueueSize bounds the entries waiting per sink (default 10000);
	// when full, the oldest is dropped.
	QueueSize int
	// BatchSize is the most entries per POST or write (default 100).
	BatchSize int
	// MaxDelay is how long an entry may wait for its batch to fill
	// (default 5s).
	MaxDelay time.Duration
	// Timeout bounds one POST (default 10s).
	Timeout time.Duration
	// MaxAttempts is how often a batch is tried before it is dropped
	// (default 5); the waits between attempts start at RetryBackoff
	// (default 1s) and double, up to a minute.
	MaxAttempts  int
	RetryBackoff time.Duration
	// FlushTimeout bounds Close's flush (default 5s); what is not sent by
	// then is dropped.
	FlushTimeout time.Duration
	// Transport carries the POSTs (default: a clone of
	// http.DefaultTransport).
	Transport http.RoundTripper
	// Logger receives a sink's changes between up and down (default:
	// none).
	Logger *zap.Logger
}

// Validate reports the first problem with c: no sink, a URL that is not
// http(s), a negative value.
func (c FeedbackConfig) Validate() error {
	if c.URL == "" && c.File == "" {
		return errors.New("feedback: neither url nor file is set")
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("feedback: url %q: not an http(s) URL", c.URL)
		}
	}
	switch {
	case c.QueueSize < 0, c.BatchSize < 0, c.MaxAttempts < 0:
		return errors.New("feedback: negative queue_size, batch_size or max_attempts")
	case c.MaxDelay < 0, c.Timeout < 0, c.RetryBackoff < 0, c.FlushTimeout < 0:
		return errors.New("feedback: negative duration")
	}
	return nil
}

// FeedbackStats are one sink's counters. Entries are counted per sink, and
// Queued = Sent + Dropped + Pending in every snapshot.
type FeedbackStats struct {
	// Sink is "http" or "file".
	Sink string
	// Queued counts entries handed to Report, Sent those the sink took,
	// Dropped those lost: pushed out of a full queue, in a batch given up
	// after MaxAttempts or refused with a 4xx, reported after Close, or
	// unsent when Close's deadline ended.
	Queued, Sent, Dropped uint64
	// Failures counts failed attempts (a POST or a write).
	Failures uint64
	// Pending is the number of entries queued or being sent now.
	Pending int
	// Down is true from a failed attempt until the next success.
	Down bool
	// LastError is the last failure, "" if none.
	LastError string
}

// Feedback reports the URLs WRS saw and its verdicts to a collector,
// asynchronously: Report never blocks and never fails, whatever the sinks
// do, so mail is never delayed by feedback (the appliance's "nothing
// visible" when its feedback server is unreachable). Create it with
// NewFeedback, hand it to WRS, and Close it after WRS.
//
// Its waits (MaxDelay, backoff, FlushTimeout) run on real time, not on an
// injected Clock: they are network waits of seconds, and tests use
// milliseconds instead.
//
// The URLs are the message's links as written, query strings included,
// which may hold a recipient's address or a token: send them only to a
// collector that may see them.
type Feedback struct {
	sinks     []*feedbackSink
	batch     int
	delay     time.Duration
	attempts  int
	backoff   time.Duration
	flush     time.Duration
	log       *zap.Logger
	transport *http.Transport // ours to close, nil if configured

	closing chan struct{}      // closed by Close: flush what is queued
	hard    context.Context    // cancelled when the flush deadline ends
	cancel  context.CancelFunc //
	closed  atomic.Bool
	wg      sync.WaitGroup // workers
}

// feedbackSink is one destination with its queue and worker.
type feedbackSink struct {
	name      string
	send      func(ctx context.Context, batch []FeedbackEntry) error
	permanent func(error) bool // true: retrying cannot help
	max       int
	notify    chan struct{} // capacity 1: "look at the queue"

	mu       sync.Mutex
	queue    []queuedEntry
	inflight int
	stopped  bool // the worker has ended: Report drops
	down     bool
	lastErr  string

	queued, sent, dropped, failures atomic.Uint64
}

type queuedEntry struct {
	e  FeedbackEntry
	at time.Time // when queued, for MaxDelay (real time)
}

// NewFeedback returns a running reporter for cfg. It creates the file
// sink's file now, so a path that cannot be written is refused at start.
func NewFeedback(cfg FeedbackConfig) (*Feedback, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Feedback{
		batch:    orDefault(cfg.BatchSize, DefaultFeedbackBatchSize),
		delay:    orDefault(cfg.MaxDelay, DefaultFeedbackMaxDelay),
		attempts: orDefault(cfg.MaxAttempts, DefaultFeedbackMaxAttempts),
		backoff:  orDefault(cfg.RetryBackoff, DefaultFeedbackRetryBackoff),
		flush:    orDefault(cfg.FlushTimeout, DefaultFeedbackFlushTimeout),
		log:      cfg.Logger,
		closing:  make(chan struct{}),
	}
	if f.log == nil {
		f.log = zap.NewNop()
	}
	queueSize := orDefault(cfg.QueueSize, DefaultFeedbackQueueSize)
	if cfg.File != "" {
		fh, err := os.OpenFile(cfg.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("feedback: %w", err)
		}
		fh.Close()
		path := cfg.File
		f.sinks = append(f.sinks, &feedbackSink{
			name:      "file",
			send:      func(_ context.Context, b []FeedbackEntry) error { return appendJSONLines(path, b) },
			permanent: func(error) bool { return false },
		})
	}
	if cfg.URL != "" {
		rt := cfg.Transport
		if rt == nil {
			f.transport = http.DefaultTransport.(*http.Transport).Clone()
			rt = f.transport
		}
		hs := &httpSink{
			url:    cfg.URL,
			header: cfg.Header.Clone(),
			client: &http.Client{
				Transport: rt,
				Timeout:   orDefault(cfg.Timeout, DefaultFeedbackTimeout),
			},
		}
		f.sinks = append(f.sinks, &feedbackSink{name: "http", send: hs.post, permanent: isPermanentHTTP})
	}
	f.hard, f.cancel = context.WithCancel(context.Background())
	for _, s := range f.sinks {
		s.max = queueSize
		s.notify = make(chan struct{}, 1)
		f.wg.Add(1)
		go f.run(s)
	}
	return f, nil
}

// Report queues entries for every sink and returns at once. When a
// sink's queue is full its oldest entries make room and are counted as
// dropped. After Close, entries are dropped.
func (f *Feedback) Report(entries ...FeedbackEntry) {
	if f == nil || len(entries) == 0 {
		return
	}
	now := time.Now()
	for _, s := range f.sinks {
		s.mu.Lock()
		s.queued.Add(uint64(len(entries)))
		if s.stopped {
			s.dropped.Add(uint64(len(entries)))
			s.mu.Unlock()
			continue
		}
		for _, e := range entries {
			s.queue = append(s.queue, queuedEntry{e: e, at: now})
		}
		if over := len(s.queue) - s.max; over > 0 {
			clear(s.queue[:over]) // let the dropped entries be collected
			s.queue = s.queue[over:]
			s.dropped.Add(uint64(over))
		}
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// run is a sink's worker: it sends batches until Close has flushed.
func (f *Feedback) run(s *feedbackSink) {
	defer f.wg.Done()
	for {
		batch, ok := f.next(s)
		if !ok {
			return
		}
		sent := f.deliver(s, batch)
		s.mu.Lock()
		s.inflight = 0
		if sent {
			s.sent.Add(uint64(len(batch)))
		} else {
			s.dropped.Add(uint64(len(batch)))
		}
		s.mu.Unlock()
	}
}

// next waits until a batch is due: BatchSize entries, or the oldest has
// waited MaxDelay, or Close wants everything. It returns false when the
// worker should stop, having dropped whatever the flush deadline left.
func (f *Feedback) next(s *feedbackSink) ([]FeedbackEntry, bool) {
	for {
		s.mu.Lock()
		n := len(s.queue)
		closing := isDone(f.closing)
		if f.hard.Err() != nil || (closing && n == 0) {
			s.dropped.Add(uint64(n))
			s.queue = nil
			s.stopped = true
			s.mu.Unlock()
			return nil, false
		}
		var wait time.Duration
		if n > 0 {
			wait = time.Until(s.queue[0].at.Add(f.delay))
		}
		if n >= f.batch || (n > 0 && (closing || wait <= 0)) {
			k := min(n, f.batch)
			batch := make([]FeedbackEntry, k)
			for i := range k {
				batch[i] = s.queue[i].e
			}
			clear(s.queue[:k])
			s.queue = s.queue[k:]
			s.inflight = k
			s.mu.Unlock()
			return batch, true
		}
		s.mu.Unlock()
		var timer *time.Timer
		var due <-chan time.Time
		if n > 0 {
			timer = time.NewTimer(wait)
			due = timer.C
		}
		select {
		case <-s.notify:
		case <-due:
		case <-f.closing:
		case <-f.hard.Done():
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// deliver sends one batch, retrying with a doubling backoff. It reports
// false, for the batch to be dropped, after MaxAttempts, on a permanent
// error, or when the flush deadline ends.
func (f *Feedback) deliver(s *feedbackSink, batch []FeedbackEntry) bool {
	backoff := f.backoff
	for attempt := 1; ; attempt++ {
		err := s.send(f.hard, batch)
		if err == nil {
			s.setUp(f.log)
			return true
		}
		s.failures.Add(1)
		s.setDown(f.log, err)
		if s.permanent(err) || attempt >= f.attempts || f.hard.Err() != nil {
			f.log.Debug("WRS feedback batch dropped", zap.String("sink", s.name),
				zap.Int("entries", len(batch)), zap.Int("attempts", attempt), zap.Error(err))
			return false
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-f.hard.Done():
			t.Stop()
		}
		backoff = min(2*backoff, maxFeedbackBackoff)
	}
}

func (s *feedbackSink) setDown(log *zap.Logger, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err.Error()
	if !s.down {
		s.down = true
		log.Warn("WRS feedback sink down; entries are retried, then dropped and counted (mail is not affected)",
			zap.String("stage", string(WRSStage)), zap.String("sink", s.name), zap.String("reason", s.lastErr))
	}
}

func (s *feedbackSink) setUp(log *zap.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		s.down = false
		log.Info("WRS feedback sink up again", zap.String("stage", string(WRSStage)), zap.String("sink", s.name))
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Stats returns each sink's counters, file first.
func (f *Feedback) Stats() []FeedbackStats {
	if f == nil {
		return nil
	}
	out := make([]FeedbackStats, len(f.sinks))
	for i, s := range f.sinks {
		// Under the lock, so that Queued = Sent + Dropped + Pending holds
		// in every snapshot of an idle sink.
		s.mu.Lock()
		out[i] = FeedbackStats{
			Sink:      s.name,
			Queued:    s.queued.Load(),
			Sent:      s.sent.Load(),
			Dropped:   s.dropped.Load(),
			Failures:  s.failures.Load(),
			Pending:   len(s.queue) + s.inflight,
			Down:      s.down,
			LastError: s.lastErr,
		}
		s.mu.Unlock()
	}
	return out
}

// Close stops accepting entries, sends what is queued within
// FlushTimeout, drops and counts the rest, and waits for the workers.
func (f *Feedback) Close() error {
	if f == nil || f.closed.Swap(true) {
		return nil
	}
	close(f.closing)
	t := time.AfterFunc(f.flush, f.cancel)
	f.wg.Wait()
	t.Stop()
	f.cancel()
	if f.transport != nil {
		f.transport.CloseIdleConnections()
	}
	return nil
}

// httpSink POSTs batches as JSON arrays.
type httpSink struct {
	url    string
	header http.Header
	client *http.Client
}

// statusError is a POST answered with a non-2xx status.
type statusError struct{ code int }

func (e *statusError) Error() string { return "HTTP " + strconv.Itoa(e.code) }

func isPermanentHTTP(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.code >= 400 && se.code < 500 &&
		se.code != http.StatusRequestTimeout && se.code != http.StatusTooManyRequests
}

func (h *httpSink) post(ctx context.Context, batch []FeedbackEntry) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range h.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		// The URL may carry a token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &statusError{resp.StatusCode}
	}
	return nil
}

// appendJSONLines appends one JSON line per entry in a single write(2)
// on an O_APPEND descriptor, so that on a local file system another
// writer's lines (a second foxproxy) land before or after the batch, not
// inside a line.
func appendJSONLines(path string, batch []FeedbackEntry) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range batch {
		if err := enc.Encode(&batch[i]); err != nil {
			return err
		}
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(buf.Bytes())
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}
