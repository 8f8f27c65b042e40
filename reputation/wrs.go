package reputation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/clock"
	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
)

// DefaultWRSBudget bounds WRS's work on one message: extraction and
// lookups.
const DefaultWRSBudget = 5 * time.Second

// WRSConfig configures the WRS stage. Backends are asked in this order:
// Zones, then SafeBrowsing, then Backends; findings list them so.
type WRSConfig struct {
	// Zones are the DNS URI block lists; they need Client.
	Zones []DNSZone
	// Client is the shared DNS-list client (the one ERS uses: one cache,
	// one set of bounds). WRS does not close it.
	Client *DNSClient
	// SafeBrowsing, when set, adds the Safe Browsing Lookup API backend.
	SafeBrowsing *SafeBrowsingConfig
	// Backends are further backends, after the above. WRS does not close
	// them.
	Backends []Backend
	// Extractor bounds and tunes URL extraction (links.Config; the zero
	// value is the extractor's defaults, 50 URLs at most).
	Extractor links.Config
	// Budget bounds Inspect, extraction included (default 5s); the
	// caller's context may end it sooner.
	Budget time.Duration
	// Breaker configures every backend's circuit breaker.
	Breaker BreakerConfig
	// Feedback, when set, gets the URLs and verdicts of every message
	// that has URLs. WRS does not close it: close WRS first.
	Feedback *Feedback
	// Logger receives breaker state changes (default: none).
	Logger *zap.Logger
	// Clock drives the breakers and Safe Browsing's cache (default:
	// system).
	Clock clock.Clock
	// Lists, when set, are the local lists CheckURL asks first (Inspect
	// uses the message's snapshot, lists.FromContext).
	Lists *lists.Holder
}

// Validate reports the first problem with c that the configuration layer
// should refuse: no backend, zones without a DNS client, a bad zone (see
// DNSZone.Validate) or a zone listed twice, a bad Safe Browsing or breaker
// configuration, a negative budget, a malformed redirector.
func (c WRSConfig) Validate() error {
	if len(c.Zones) == 0 && c.SafeBrowsing == nil && len(c.Backends) == 0 {
		return errors.New("wrs: no zones and no safebrowsing")
	}
	if len(c.Zones) > 0 && c.Client == nil {
		return errors.New("wrs: zones need a DNS client")
	}
	names := make(map[string]bool)
	for _, z := range c.Zones {
		if err := z.Validate(); err != nil {
			return fmt.Errorf("wrs: %w", err)
		}
		n := canonicalZone(z.Name)
		if names[n] {
			return fmt.Errorf("wrs: zone %s listed twice", n)
		}
		names[n] = true
	}
	if c.SafeBrowsing != nil {
		if err := c.SafeBrowsing.Validate(); err != nil {
			return fmt.Errorf("wrs: %w", err)
		}
		if names[SafeBrowsingName] {
			return fmt.Errorf("wrs: zone %s clashes with the Safe Browsing backend's name", SafeBrowsingName)
		}
		names[SafeBrowsingName] = true
	}
	for _, b := range c.Backends {
		if b == nil || names[b.Name()] {
			return errors.New("wrs: nil backend or backend name used twice")
		}
		names[b.Name()] = true
	}
	if err := c.Breaker.Validate(); err != nil {
		return fmt.Errorf("wrs: %w", err)
	}
	if c.Budget < 0 {
		return errors.New("wrs: negative budget")
	}
	if _, err := links.New(c.Extractor); err != nil {
		return fmt.Errorf("wrs: %w", err)
	}
	return nil
}

// WRS is the web reputation stage (failure table row 2, README.md): it extracts the
// URLs of a message (package links) and asks every backend about them in
// parallel, within the budget. Each backend sits behind its own circuit
// breaker (see StateClosed), so an outage costs Failures messages their
// timeout, not every message.
//
// Inspect combines the backends like ERS combines its zones:
//
//   - no URLs → Clean, Detail "no urls" (whatever the backends' state);
//   - any backend listed something → Listed, even if others failed (a
//     listing is a fact; the failures are named in Detail), one Item per
//     listed key and backend;
//   - else any backend failed, timed out or was skipped by its open
//     breaker → Skipped, with each one's reason in Detail: the appliance's
//     "WRS is skipped, its policy condition no longer matches, the message
//     continues under the other rules";
//   - else → Clean, Detail "N urls" (and "truncated" when the extractor
//     hit a limit, so some URLs were not looked at).
type WRS struct {
	extractor *links.Extractor
	backends  []Backend
	breakers  []*breaker
	own       []io.Closer // backends WRS created
	budget    time.Duration
	feedback  *Feedback
	clock     clock.Clock
	lists     *lists.Holder
	closed    atomic.Bool
}

var _ pipeline.Stage = (*WRS)(nil)

// NewWRS returns the stage for cfg, or an error naming what is wrong.
func NewWRS(cfg WRSConfig) (*WRS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	x, _ := links.New(cfg.Extractor) // validated above
	w := &WRS{
		lists:     cfg.Lists,
		extractor: x,
		budget:    orDefault(cfg.Budget, DefaultWRSBudget),
		feedback:  cfg.Feedback,
		clock:     cfg.Clock,
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if w.clock == nil {
		w.clock = clock.System()
	}
	for _, z := range cfg.Zones {
		b, err := NewDNSListBackend(cfg.Client, z)
		if err != nil {
			return nil, fmt.Errorf("wrs: %w", err)
		}
		w.backends = append(w.backends, b)
	}
	if cfg.SafeBrowsing != nil {
		sc := *cfg.SafeBrowsing
		if sc.Clock == nil {
			sc.Clock = w.clock
		}
		sb, err := NewSafeBrowsing(sc)
		if err != nil {
			return nil, fmt.Errorf("wrs: %w", err)
		}
		w.backends = append(w.backends, sb)
		w.own = append(w.own, sb)
	}
	w.backends = append(w.backends, cfg.Backends...)
	for _, b := range w.backends {
		w.breakers = append(w.breakers, newBreaker(b.Name(), cfg.Breaker, b.Probe, log, w.clock))
	}
	return w, nil
}

// Name implements pipeline.Stage.
func (w *WRS) Name() pipeline.StageName { return WRSStage }

// outcome is one backend's part of a finding.
type outcome struct {
	res  BackendResult
	err  error
	open bool // not asked: breaker open
}

// Inspect implements pipeline.Stage (rules on WRS). It returns by the
// budget or ctx, whichever ends first, and then hands the URLs and
// verdicts to Feedback without waiting.
func (w *WRS) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	start := time.Now()
	f := w.inspect(ctx, tx)
	f.Stage = w.Name()
	f.Duration = time.Since(start)
	return f
}

func (w *WRS) inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	if w.closed.Load() {
		return pipeline.Finding{Status: pipeline.Disabled, Detail: "stage closed"}
	}
	ctx, cancel := context.WithTimeout(ctx, w.budget)
	defer cancel()
	// Shared with the lists stage when its extraction settings are the same.
	res, err := tx.Links(ctx, w.extractor)
	if err != nil || ctx.Err() != nil {
		// Asking now would charge the backends' breakers with a timeout
		// that was spent reading the message.
		return pipeline.Finding{Status: pipeline.Skipped, Detail: "budget ended during URL extraction"}
	}
	if len(res.URLs) == 0 {
		d := "no urls"
		if res.Truncated {
			d += "; truncated"
		}
		return pipeline.Finding{Status: pipeline.Clean, Detail: d, Incomplete: res.Truncated}
	}
	local, rest := blockedLocally(lists.FromContext(ctx), res)
	if len(rest.URLs) == 0 {
		return w.combine(res, []outcome{{res: local}}, []string{LocalListName})
	}
	q := &Query{URLs: rest.URLs, Keys: rest.Keys()}
	outs := w.askAll(ctx, q)
	w.report(tx, q, outs)
	names := w.backendNames()
	if len(local.Hits) > 0 {
		outs = append([]outcome{{res: local}}, outs...)
		names = append([]string{LocalListName}, names...)
	}
	return w.combine(res, outs, names)
}

// ask asks backend i through its breaker.
func (w *WRS) ask(ctx context.Context, i int, q *Query) outcome {
	b := w.breakers[i]
	gen, ok := b.allow()
	if !ok {
		return outcome{open: true}
	}
	res, err := w.backends[i].Lookup(ctx, q)
	recorded := err
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The caller gave up (the session ended), not the backend.
		recorded = context.Canceled
	}
	b.record(gen, len(res.Hits) > 0, res.Cached, recorded)
	return outcome{res: res, err: err}
}

// askAll asks every backend about q at once.
func (w *WRS) askAll(ctx context.Context, q *Query) []outcome {
	outs := make([]outcome, len(w.backends))
	if len(w.backends) == 1 {
		outs[0] = w.ask(ctx, 0, q)
		return outs
	}
	var wg sync.WaitGroup
	for i := range w.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = w.ask(ctx, i, q)
		}()
	}
	wg.Wait()
	return outs
}

func (w *WRS) backendNames() []string {
	names := make([]string, len(w.backends))
	for i, b := range w.backends {
		names[i] = b.Name()
	}
	return names
}

// tally is what the backends' outcomes say together: the hits (one item
// per listed thing and list), their categories (sorted, once each), the
// lists that listed something, and the backends that could not answer.
type tally struct {
	items      []pipeline.Item
	categories []string
	listedBy   []string
	problems   []string
}

func tallyOutcomes(outs []outcome, names []string) tally {
	var t tally
	seen := make(map[pipeline.Item]bool)
	for i, o := range outs {
		name := names[i]
		switch {
		case o.open:
			t.problems = append(t.problems, name+": breaker open")
		case o.err != nil:
			t.problems = append(t.problems, name+": "+wrsShortError(o.err))
		}
		if len(o.res.Hits) > 0 {
			t.listedBy = append(t.listedBy, name)
		}
		for _, h := range o.res.Hits {
			it := pipeline.Item{What: h.What, Zone: name, Category: strings.Join(h.Categories, ",")}
			if !seen[it] {
				seen[it] = true
				t.items = append(t.items, it)
			}
			t.categories = append(t.categories, h.Categories...)
		}
	}
	slices.Sort(t.categories)
	t.categories = slices.Compact(t.categories)
	return t
}

// combine turns the backends' outcomes into one finding (rules on WRS).
func (w *WRS) combine(res *links.Result, outs []outcome, names []string) pipeline.Finding {
	t := tallyOutcomes(outs, names)
	f := pipeline.Finding{Items: t.items, Categories: t.categories}
	problems := t.problems
	var parts []string
	switch {
	case len(f.Items) > 0:
		f.Status = pipeline.Listed
		parts = append(parts, "listed by "+strings.Join(t.listedBy, ", "))
	case len(problems) > 0:
		f.Status = pipeline.Skipped
		f.Categories = nil
	default:
		f.Status = pipeline.Clean
	}
	parts = append(parts, problems...)
	parts = append(parts, fmt.Sprintf("%d urls", len(res.URLs)))
	if res.Truncated {
		parts = append(parts, "truncated")
		f.Incomplete = true
	}
	f.Detail = strings.Join(parts, "; ")
	return f
}

// wrsShortError names a backend's failure in a few words for Detail; the
// full error is in the backend's Health.
func wrsShortError(err error) string {
	var se *sbError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &se):
		return se.kind
	case errors.Is(err, ErrDNS), errors.Is(err, ErrRefused), errors.Is(err, ErrBadAnswer):
		return shortError(err)
	}
	return cut(SanitizeReason(err.Error()), 80)
}

// report hands the message's URLs and their verdicts to Feedback.
func (w *WRS) report(tx *pipeline.Transaction, q *Query, outs []outcome) {
	if w.feedback == nil {
		return
	}
	type listing struct{ cats, lists []string }
	byKey := make(map[links.Key]*listing)
	byURL := make(map[string]*listing)
	add := func(m *listing, name string, cats []string) {
		m.cats = append(m.cats, cats...)
		m.lists = append(m.lists, name)
	}
	complete := true
	for i, o := range outs {
		if o.open || o.err != nil {
			complete = false
		}
		name := w.backends[i].Name()
		for _, h := range o.res.Hits {
			var m *listing
			if h.URL != "" {
				if m = byURL[h.URL]; m == nil {
					m = &listing{}
					byURL[h.URL] = m
				}
			} else {
				k := links.Key{Kind: h.Kind, Name: h.What}
				if m = byKey[k]; m == nil {
					m = &listing{}
					byKey[k] = m
				}
			}
			add(m, name, h.Categories)
		}
	}
	now := w.clock.Now()
	entries := make([]FeedbackEntry, 0, len(q.URLs))
	for _, u := range q.URLs {
		e := FeedbackEntry{Time: now, Message: tx.ID, QueueID: tx.QueueID, URL: u.Normalized, Host: u.Host}
		var hit listing
		for _, m := range []*listing{
			byURL[u.Normalized],
			byKey[links.Key{Kind: links.KeyDomain, Name: u.Domain}],
			byKey[links.Key{Kind: links.KeyHost, Name: u.Host}],
			byKey[links.Key{Kind: links.KeyIP, Name: u.Host}],
		} {
			if m != nil {
				hit.cats = append(hit.cats, m.cats...)
				hit.lists = append(hit.lists, m.lists...)
			}
		}
		switch {
		case len(hit.cats) > 0:
			e.Verdict = VerdictListed
			slices.Sort(hit.cats)
			slices.Sort(hit.lists)
			e.Categories, e.Lists = slices.Compact(hit.cats), slices.Compact(hit.lists)
		case complete:
			e.Verdict = VerdictClean
		default:
			e.Verdict = VerdictUnknown
		}
		entries = append(entries, e)
	}
	w.feedback.Report(entries...)
}

// Health returns a snapshot of every backend's breaker, in the order of
// WRSConfig, for the status endpoint.
func (w *WRS) Health() []Health {
	out := make([]Health, len(w.breakers))
	for i, b := range w.breakers {
		out[i] = b.snapshot()
	}
	return out
}

// Close stops the probes and waits for running ones to end; Inspect then
// reports Disabled. It closes the Safe Browsing backend it created, not
// the DNS client, Feedback or WRSConfig.Backends.
func (w *WRS) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	for _, b := range w.breakers {
		b.close()
	}
	for _, c := range w.own {
		c.Close()
	}
	return nil
}
