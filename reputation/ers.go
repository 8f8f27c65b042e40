package reputation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/clock"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
)

// Defaults for ERSConfig.
const (
	// DefaultBudget bounds ERS's work on one message.
	DefaultBudget = 5 * time.Second
	// DefaultRecheckInterval is the configuration's default re-check
	// interval, as in the vendor's hotfix. ERSConfig's zero value is not
	// this default but the legacy latch: the config layer must fill it in.
	DefaultRecheckInterval = time.Minute
)

// ERSConfig configures the ERS stage.
type ERSConfig struct {
	// Zones are the IP lists to ask, in order; at least one.
	Zones []Zone
	// Client is the shared DNS-list client; ERS does not close it.
	Client *DNSClient
	// Budget bounds Inspect (default DefaultBudget); the caller's context
	// may end it sooner.
	Budget time.Duration
	// RecheckInterval is how often a disabled zone is re-checked. 0 keeps
	// a zone that failed its first check disabled until restart, like the
	// appliance before its hotfix: not recommended.
	RecheckInterval time.Duration
	// SkipStartupCheck starts every zone up, without the connectivity
	// check. Zones are then never disabled.
	SkipStartupCheck bool
	// Logger receives state changes (default: none).
	Logger *zap.Logger
	// Clock drives state timestamps and re-checks (default: system).
	Clock clock.Clock
	// Lists, when set, are asked at MAIL time: an approved client's
	// lookups are not prefetched. (Inspect uses the message's snapshot,
	// lists.FromContext.)
	Lists *lists.Holder
}

// ERS is the email reputation stage: it looks the message's client address
// up in DNS lists (RFC 5782) and reports a listing as a finding.
//
// Each zone has its own health (see State): the first message (or the
// first PrefetchClient, whichever comes first) runs the zone's
// connectivity check, which the first messages wait for within their
// budget; a zone that fails is disabled and re-checked every
// RecheckInterval while the others keep working; a zone that passed is
// never disabled again. Inspect combines the zones like this:
//
//   - the client is on the message's approved_clients list → Skipped,
//     Detail "approved client", without a query (nor a prefetch);
//   - any zone listed → Listed, even if other zones failed (a listing is a
//     fact; the failures are named in Detail);
//   - else any enabled zone failed (DNS error, timeout, refused or bad
//     answer, check still running when the budget ended) → Skipped: without
//     that zone's answer the message cannot be called clean;
//   - else every zone disabled → Disabled;
//   - else → Clean (disabled zones are named in Detail).
type ERS struct {
	zones        []Zone
	health       []*zoneHealth
	client       *DNSClient
	budget       time.Duration
	recheck      time.Duration
	checkTimeout time.Duration
	log          *zap.Logger
	clock        clock.Clock
	lists        *lists.Holder

	base   context.Context // parent of the checks; cancelled by Close
	cancel context.CancelFunc
	closed atomic.Bool
	wg     sync.WaitGroup // running checks
}

var (
	_ pipeline.Stage             = (*ERS)(nil)
	_ pipeline.ClientPrefetcher  = (*ERS)(nil)
	_ pipeline.EnvelopeInspector = (*ERS)(nil)
)

// NewERS returns the stage for cfg, or an error naming what is wrong.
func NewERS(cfg ERSConfig) (*ERS, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("ers: no DNS client")
	case len(cfg.Zones) == 0:
		return nil, errors.New("ers: no zones")
	case cfg.Budget < 0:
		return nil, errors.New("ers: negative budget")
	case cfg.RecheckInterval < 0:
		return nil, errors.New("ers: negative recheck_interval")
	}
	e := &ERS{
		client:  cfg.Client,
		budget:  orDefault(cfg.Budget, DefaultBudget),
		recheck: cfg.RecheckInterval,
		log:     cfg.Logger,
		clock:   cfg.Clock,
		lists:   cfg.Lists,
		// The check's queries end by themselves after the client's
		// attempts; this is only an outer bound.
		checkTimeout: time.Duration(cfg.Client.attempts)*cfg.Client.timeout + time.Second,
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.clock == nil {
		e.clock = clock.System()
	}
	seen := make(map[string]bool)
	for _, z := range cfg.Zones {
		if err := z.Validate(); err != nil {
			return nil, fmt.Errorf("ers: %w", err)
		}
		z.Name = canonicalZone(z.Name)
		if seen[z.Name] {
			return nil, fmt.Errorf("ers: zone %s listed twice", z.Name)
		}
		seen[z.Name] = true
		codes := make(map[netip.Addr]string, len(z.Codes))
		for k, v := range z.Codes {
			codes[k] = v
		}
		z.Codes = codes
		e.zones = append(e.zones, z)
	}
	now := e.clock.Now()
	for _, z := range e.zones {
		h := &zoneHealth{e: e, zone: z, state: StateUnchecked, since: now}
		if cfg.SkipStartupCheck {
			h.state = StateUp
		}
		e.health = append(e.health, h)
	}
	e.base, e.cancel = context.WithCancel(context.Background())
	if e.recheck == 0 && !cfg.SkipStartupCheck {
		e.log.Warn("ERS recheck_interval is 0: a zone that fails its first check stays disabled until restart (not recommended)",
			zap.String("stage", string(ERSStage)))
	}
	return e, nil
}

// Name implements pipeline.Stage.
func (e *ERS) Name() pipeline.StageName { return ERSStage }

// PrefetchClient implements pipeline.ClientPrefetcher: it starts the first
// connectivity checks if none ran, and the lookups of addr in every zone
// that is not disabled, then returns without waiting. The answers land in
// the client's cache (or in-flight table) for Inspect to pick up.
func (e *ERS) PrefetchClient(addr netip.Addr) {
	if !addr.IsValid() || e.closed.Load() {
		return
	}
	if _, ok := e.lists.Current().ClientApproved(addr); ok {
		return
	}
	for i, z := range e.zones {
		h := e.health[i]
		h.startIfUnchecked()
		if h.isDisabled() {
			continue
		}
		name, err := ipQueryName(addr, z.Name)
		if err != nil {
			return
		}
		e.client.prefetch(cacheKey{name, dns.TypeA}, z.Name)
	}
}

// zoneOutcome is one zone's part of a finding.
type zoneOutcome struct {
	res      Result
	err      error
	disabled bool
}

// Inspect implements pipeline.Stage: it looks tx.Client up in all zones in
// parallel, within the budget, and combines the answers (see ERS). It
// returns by the budget or ctx, whichever ends first; the lookups it
// leaves behind finish on their own timeouts and fill the cache.
func (e *ERS) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	start := time.Now()
	var f pipeline.Finding
	if _, ok := lists.FromContext(ctx).ClientApproved(tx.Client); ok {
		// The appliance's "approved senders": no reputation lookup at all.
		f = pipeline.Finding{Status: pipeline.Skipped, Detail: "approved client"}
	} else {
		f = e.inspect(ctx, tx.Client)
	}
	f.Stage = e.Name()
	f.Duration = time.Since(start)
	return f
}

// InspectEnvelope implements pipeline.EnvelopeInspector: ERS looks at the
// client alone, so its finding before DATA is Inspect's, with the same
// budget. The lookups PrefetchClient started at MAIL are what it waits
// for; their answers stay cached for Inspect after DATA.
func (e *ERS) InspectEnvelope(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	return e.Inspect(ctx, tx)
}

func (e *ERS) inspect(ctx context.Context, addr netip.Addr) pipeline.Finding {
	if e.closed.Load() {
		return pipeline.Finding{Status: pipeline.Disabled, Detail: "stage closed"}
	}
	if !addr.IsValid() {
		// Still the first message: start the checks for the next ones.
		for _, h := range e.health {
			h.startIfUnchecked()
		}
		if e.allDisabled() {
			return pipeline.Finding{Status: pipeline.Disabled, Detail: "all zones disabled"}
		}
		return pipeline.Finding{Status: pipeline.Skipped, Detail: "no client address"}
	}
	ctx, cancel := context.WithTimeout(ctx, e.budget)
	defer cancel()
	outs := make([]zoneOutcome, len(e.zones))
	if len(e.zones) == 1 {
		outs[0] = e.inspectZone(ctx, 0, addr)
	} else {
		var wg sync.WaitGroup
		for i := range e.zones {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i] = e.inspectZone(ctx, i, addr)
			}()
		}
		wg.Wait()
	}
	return e.combine(addr, outs)
}

// inspectZone asks one zone, after its first check if it has none.
func (e *ERS) inspectZone(ctx context.Context, i int, addr netip.Addr) zoneOutcome {
	z, h := e.zones[i], e.health[i]
	ok, err := h.ready(ctx)
	if err != nil {
		return zoneOutcome{err: err}
	}
	if !ok {
		return zoneOutcome{disabled: true}
	}
	name, err := ipQueryName(addr, z.Name)
	if err != nil {
		return zoneOutcome{err: err}
	}
	res, network, err := lookupName(ctx, e.client, z, z.Name, name, false)
	h.observe(res, network, err)
	return zoneOutcome{res: res, err: err}
}

func (e *ERS) allDisabled() bool {
	for _, h := range e.health {
		if !h.isDisabled() {
			return false
		}
	}
	return true
}

// combine turns the zones' outcomes into one finding (rules on ERS).
func (e *ERS) combine(addr netip.Addr, outs []zoneOutcome) pipeline.Finding {
	var listed, failed, disabled []string
	var f pipeline.Finding
	what := addr.Unmap().WithZone("").String()
	for i, o := range outs {
		zone := e.zones[i].Name
		switch {
		case o.disabled:
			disabled = append(disabled, zone)
		case o.err != nil:
			failed = append(failed, zone+": "+shortError(o.err))
		case o.res.Listed:
			cats := strings.Join(o.res.Categories, ",")
			f.Categories = append(f.Categories, o.res.Categories...)
			f.Items = append(f.Items, pipeline.Item{What: what, Zone: zone, Category: cats})
			codes := make([]string, len(o.res.Codes))
			for j, c := range o.res.Codes {
				codes[j] = c.String()
			}
			listed = append(listed, fmt.Sprintf("%s: %s %s", zone, strings.Join(codes, ","), cats))
			if f.Reason == "" {
				f.Reason = o.res.Reason
			}
		}
	}
	switch {
	case len(listed) > 0:
		f.Status = pipeline.Listed
		slices.Sort(f.Categories)
		f.Categories = slices.Compact(f.Categories)
		f.Detail = "listed by " + strings.Join(listed, "; ")
		if len(failed) > 0 {
			f.Detail += "; failed " + strings.Join(failed, "; ")
		}
	case len(failed) > 0:
		f = pipeline.Finding{Status: pipeline.Skipped, Detail: "failed " + strings.Join(failed, "; ")}
	case len(disabled) == len(outs):
		f = pipeline.Finding{Status: pipeline.Disabled, Detail: "all zones disabled"}
	default:
		f = pipeline.Finding{Status: pipeline.Clean}
	}
	if len(disabled) > 0 && f.Status != pipeline.Disabled {
		if f.Detail != "" {
			f.Detail += "; "
		}
		f.Detail += "disabled " + strings.Join(disabled, ",")
	}
	return f
}

// shortError names a zone's failure in a few words for Detail; the full
// error is in the zone's Health.
func shortError(err error) string {
	var rc *RcodeError
	var ne net.Error
	switch {
	case errors.Is(err, errCheckPending), errors.Is(err, errStageClosed):
		return err.Error()
	case errors.Is(err, ErrRefused):
		return "query refused (127.255.255.x)"
	case errors.Is(err, ErrBadAnswer):
		return "answer outside 127.0.0.0/8"
	case errors.Is(err, ErrOverloaded):
		return "too many outstanding queries"
	case errors.Is(err, ErrClosed):
		return "dns client closed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &rc):
		return dns.RcodeToString[rc.Rcode]
	}
	return "dns error"
}

// Health returns a snapshot of every zone's health, in configuration
// order, for the status endpoint.
func (e *ERS) Health() []Health {
	out := make([]Health, len(e.health))
	for i, h := range e.health {
		out[i] = h.snapshot()
	}
	return out
}

// Close stops the re-checks and waits for running checks to end. Inspect
// then reports Disabled. It does not close the DNS client.
func (e *ERS) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	for _, h := range e.health {
		h.close()
	}
	e.cancel()
	e.wg.Wait()
	return nil
}
