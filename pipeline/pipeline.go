// Package pipeline is the seam between foxproxy's SMTP side and its checks.
//
// The proxy builds one Transaction per message, the pipeline runs every Stage
// on it and collects one Finding per stage, and the policy turns the findings
// into a verdict. Stages only report facts: a Finding never carries an SMTP
// code, and a stage never decides what happens to the message (docs/ARCHITECTURE.md).
//
// Stages are wired explicitly, in order, by the caller (cmd/foxproxy); there is
// no registry. The order is the order of the findings, which is what makes
// verdicts and trace headers deterministic.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// StageName names a stage in findings, the trace header, logs, metrics and
// the policy's conditions. Each stage's package exports its own (e.g.
// reputation.ERSStage, scan.StageName, liststage.Name); this package
// knows none of them.
type StageName string

// Status is what a stage concluded about one message. The statuses are
// shared by all stages; each stage's package says which ones it reports.
type Status string

const (
	// Clean: the stage looked and found nothing.
	Clean Status = "clean"
	// Listed: a reputation stage found the client or a URL on a list;
	// Finding.Categories says which lists.
	Listed Status = "listed"
	// Infected: a scanner found malware; Finding.Detail names it.
	Infected Status = "infected"
	// Skipped: the stage could not look at this message (its service timed
	// out or is unreachable); its policy conditions do not match.
	Skipped Status = "skipped"
	// Disabled: the stage is switched off by its own health state (the ERS
	// latch) or by configuration; its policy conditions do not match.
	Disabled Status = "disabled"
	// Unavailable: no backend could answer (scan); policy decides whether
	// that is a tempfail or a pass.
	Unavailable Status = "unavailable"
	// Error: the stage failed on this message for a reason of its own
	// (a malformed answer, a bug); Finding.Detail says what.
	Error Status = "error"
)

// statuses are all the statuses, for KnownStatus.
var statuses = []Status{Clean, Listed, Infected, Skipped, Disabled, Unavailable, Error}

// KnownStatus reports whether w is the name of a status. A policy
// condition's word that is one tests the finding's status rather than a
// category.
func KnownStatus(w string) bool {
	for _, s := range statuses {
		if string(s) == w {
			return true
		}
	}
	return false
}

// IncompleteWord marks a finding whose stage reached one of its limits
// (Finding.Incomplete) in the trace header, and is the policy keyword
// that matches one.
const IncompleteWord = "incomplete"

// Finding is one stage's result for one message.
type Finding struct {
	// Stage is the stage's Name().
	Stage StageName
	// Status is the conclusion.
	Status Status
	// Categories are the list categories that matched (e.g. "spam",
	// "phish"), sorted, without duplicates. Empty unless Status is Listed.
	Categories []string
	// Detail is a short, single-line explanation for logs and the trace
	// header: a threat name, the zone that listed, why a stage was skipped.
	Detail string
	// Backend names what produced the finding where a stage has several
	// (e.g. "smart" or "conventional" for scan).
	Backend string
	// Reason is an optional text meant for the sender, e.g. a DNSBL's TXT
	// record; policy may put it into a reject reply.
	Reason string
	// Items are the individual hits behind a Listed finding (one per
	// listed URL domain or zone), for the log line.
	Items []Item
	// Duration is how long the stage took on this message.
	Duration time.Duration
	// Incomplete: the stage reached one of its limits (a message with
	// more links, parts or nesting than it reads) and judged only what it
	// read. The policy keyword "incomplete" (IncompleteWord) matches it.
	Incomplete bool
}

// Item is one listed thing behind a finding.
type Item struct {
	What     string // the IP address, domain or URL that is listed
	Zone     string // the list that listed it
	Category string // the category its answer maps to
}

// Has reports whether the finding lists category c.
func (f Finding) Has(c string) bool {
	for _, x := range f.Categories {
		if x == c {
			return true
		}
	}
	return false
}

// Trace renders the finding for the X-Foxproxy header: "ers=clean",
// "wrs=skipped", "scan=infected(Eicar-Test-Signature)". It is one token
// without spaces or semicolons so the header stays easy to parse.
func (f Finding) Trace() string {
	var arg string
	switch f.Status {
	case Listed:
		arg = strings.Join(f.Categories, ",")
	case Infected:
		arg = f.Detail
	case Clean:
		arg = f.Backend
	}
	arg = TraceToken(arg)
	if f.Incomplete {
		arg = strings.TrimPrefix(arg+","+IncompleteWord, ",")
	}
	if arg == "" {
		return string(f.Stage) + "=" + string(f.Status)
	}
	return string(f.Stage) + "=" + string(f.Status) + "(" + arg + ")"
}

// TraceToken keeps only characters that cannot break the trace header's
// syntax, and at most 100 of them.
func TraceToken(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune(".-_,:@/", r):
			return r
		}
		return '_'
	}, s)
}

// Transaction is everything a stage may look at for one message. Stages must
// treat it as read-only; it is shared by stages running concurrently.
//
// Data of a stage's own that must stay the same for the whole message
// while it changes underneath (the local lists in force: lists.NewContext)
// travels in Run's context, put there by whoever runs the pipeline, so
// that this package imports no stage's package.
type Transaction struct {
	// ID is foxproxy's own identifier for the message, used in logs.
	ID string
	// Client is the address of the client that sent the message into the
	// mail system: XFORWARD ADDR when the upstream gave it, else the
	// upstream's Received header, else the TCP peer. It may be invalid when
	// none is known (XFORWARD ADDR=[UNAVAILABLE]).
	Client netip.Addr
	// ClientName and Helo are the client's reverse name and HELO as
	// XFORWARD gave them (or the peer's HELO).
	ClientName string
	Helo       string
	// QueueID is the upstream Postfix queue ID, when known.
	QueueID string
	// From is the envelope sender ("" for the null sender) and Rcpts the
	// envelope recipients that the downstream accepted.
	From  string
	Rcpts []string
	// Message is the spooled message content as received, without the
	// header foxproxy adds.
	Message Content
}

// Content is a spooled message. Open may be called any number of times,
// concurrently; each reader is independent.
type Content interface {
	Size() int64
	Open() io.Reader
}

// Stage examines one message and reports what it found.
//
// Inspect must honour ctx: when it is done, Inspect returns promptly with a
// Skipped (or Unavailable) finding rather than blocking. It must not retain
// tx after returning. A panic in Inspect is recovered by the pipeline and
// turned into an error from Run, which the proxy answers with a 4xx.
type Stage interface {
	// Name is the stage's name, the same for every message.
	Name() StageName
	Inspect(ctx context.Context, tx *Transaction) Finding
}

// ClientPrefetcher is implemented by stages that can start work as soon as
// the client address is known, long before DATA (ERS starts its DNS lookups
// there). Prefetch must not block.
type ClientPrefetcher interface {
	PrefetchClient(addr netip.Addr)
}

// Pipeline runs a fixed, ordered list of stages.
type Pipeline struct {
	stages []Stage
	// envelope runs the stages that are EnvelopeInspectors (RunEnvelope).
	envelope *Pipeline
}

// New returns a pipeline of the given stages, in the order given.
func New(stages ...Stage) *Pipeline {
	env := &Pipeline{}
	for _, s := range stages {
		if ei, ok := s.(EnvelopeInspector); ok {
			env.stages = append(env.stages, envelopeStage{ei})
		}
	}
	return &Pipeline{stages: stages, envelope: env}
}

// Stages returns the stages in order.
func (p *Pipeline) Stages() []Stage { return p.stages }

// PrefetchClient tells every stage that wants it the client's address.
func (p *Pipeline) PrefetchClient(addr netip.Addr) {
	if !addr.IsValid() {
		return
	}
	for _, s := range p.stages {
		if pf, ok := s.(ClientPrefetcher); ok {
			pf.PrefetchClient(addr)
		}
	}
}

// EnvelopeInspector is implemented by stages that can report on the
// envelope alone (client, HELO, sender), before DATA: a before-queue
// foxproxy uses their findings to refuse a message at RCPT (see package
// policy, DecideBeforeData). InspectEnvelope gets a Transaction without
// Message and with the recipients so far; it reports what Inspect would
// report about the envelope, and is bound by ctx like Inspect.
type EnvelopeInspector interface {
	Stage
	InspectEnvelope(ctx context.Context, tx *Transaction) Finding
}

// RunEnvelope runs the stages that are EnvelopeInspectors, concurrently as
// Run does, and returns their findings in stage order (none when no stage
// is one). A panic is reported as by Run.
func (p *Pipeline) RunEnvelope(ctx context.Context, tx *Transaction) ([]Finding, error) {
	return p.envelope.Run(ctx, tx)
}

// envelopeStage runs an EnvelopeInspector as a Stage.
type envelopeStage struct{ EnvelopeInspector }

func (s envelopeStage) Inspect(ctx context.Context, tx *Transaction) Finding {
	return s.InspectEnvelope(ctx, tx)
}

// PanicError is returned by Run when a stage panicked.
type PanicError struct {
	// Stage is the stage's name, or "links" for a panic in the shared link
	// extraction (Transaction.Links) that no stage was waiting for.
	Stage string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("stage %s panicked: %v", e.Stage, e.Value)
}

// Run runs all stages concurrently and returns their findings in stage
// order. The stages are independent of each other, so the message waits for
// the slowest stage, not for their sum. A stage that panics makes Run return
// a *PanicError; the other findings are still returned. Stages that ask for
// the message's links (Transaction.Links) share one extraction; Run returns
// once it no longer reads the message.
func (p *Pipeline) Run(ctx context.Context, tx *Transaction) ([]Finding, error) {
	findings := make([]Finding, len(p.stages))
	if len(p.stages) == 0 {
		return findings, nil
	}
	errs := make([]error, len(p.stages))
	links := &linkMemo{tx: tx, ctx: ctx}
	sctx := context.WithValue(ctx, linksKey{}, links)
	var wg sync.WaitGroup
	for i, s := range p.stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			defer func() {
				if v := recover(); v != nil {
					pe := &PanicError{Stage: string(s.Name()), Value: v, Stack: debug.Stack()}
					if ep, ok := v.(*extractPanic); ok {
						pe.Value, pe.Stack = ep.value, ep.stack
					}
					errs[i] = pe
					findings[i] = Finding{Stage: s.Name(), Status: Error, Detail: "internal error"}
				}
				findings[i].Duration = time.Since(start)
			}()
			f := s.Inspect(sctx, tx)
			f.Stage = s.Name()
			findings[i] = f
		}()
	}
	wg.Wait()
	if ep := links.close(); ep != nil {
		errs = append(errs, &PanicError{Stage: "links", Value: ep.value, Stack: ep.stack})
	}
	for _, err := range errs {
		if err != nil {
			return findings, err
		}
	}
	return findings, nil
}

// ContextReader reads r until ctx ends, so a stage that reads a whole
// message (extracting links, say) cannot outlive its time.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
