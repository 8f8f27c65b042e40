package pipeline

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/foxproxy/foxproxy/links"
)

// Links returns the links in tx.Message as x finds them (an empty result
// when there is no message). The result may be shared with other stages:
// callers must not modify it.
//
// Inside Run, stages whose extractors are the Same share one extraction of
// the message (finding links is the most expensive step of WRS and of the
// lists stage). The first to ask starts it, bounded by Run's context, and
// each caller waits for it under its own ctx. A caller whose ctx ends first
// gets a nil result and ctx's error while the extraction goes on for the
// others; when the last caller waiting gives up, the extraction stops and
// that caller gets what was found so far with ctx's error, as if it had
// extracted alone. A caller whose extractor is not the Same as the first
// one's, or that asks after the shared extraction was abandoned, extracts on
// its own, as Links does outside Run.
//
// A non-nil error (ctx's) means the links may be incomplete; the result,
// when not nil, holds those found until then. Limits reached by the
// extractor are not errors: see links.Result.Truncated.
func (tx *Transaction) Links(ctx context.Context, x *links.Extractor) (*links.Result, error) {
	if tx.Message == nil {
		return &links.Result{}, nil
	}
	m, _ := ctx.Value(linksKey{}).(*linkMemo)
	if m == nil || m.tx != tx || !m.join(x) {
		return extract(ctx, x, tx.Message)
	}
	select {
	case <-m.done:
		return m.result()
	case <-ctx.Done():
	}
	if m.leave() {
		<-m.done // stopped at its next read, or finished meanwhile
		res, _ := m.result()
		return res, ctx.Err()
	}
	return nil, ctx.Err()
}

// extract reads c's links under ctx.
func extract(ctx context.Context, x *links.Extractor, c Content) (*links.Result, error) {
	res := x.Extract(ContextReader(ctx, c.Open()))
	return res, ctx.Err()
}

// linksKey is the context key of Run's linkMemo.
type linksKey struct{}

// linkMemo is one Run's shared link extraction.
type linkMemo struct {
	tx  *Transaction
	ctx context.Context // Run's: bounds the extraction

	mu        sync.Mutex
	x         *links.Extractor // the extraction's settings; nil: not started
	cancel    context.CancelFunc
	waiting   int  // callers waiting for the extraction
	abandoned bool // stopped before it finished, or Run has ended

	done     chan struct{} // closed when the extraction has ended
	res      *links.Result // set before done is closed
	err      error
	panicked *extractPanic
}

// join registers a caller with extractor x, starting the extraction if it
// is the first. It reports false when x cannot share it.
func (m *linkMemo) join(x *links.Extractor) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.abandoned:
		return false
	case m.x == nil:
		m.x = x
		m.done = make(chan struct{})
		ctx, cancel := context.WithCancel(m.ctx)
		m.cancel = cancel
		go m.run(ctx, x)
	case !m.x.Same(x):
		return false
	}
	m.waiting++
	return true
}

func (m *linkMemo) run(ctx context.Context, x *links.Extractor) {
	defer close(m.done)
	defer func() {
		if v := recover(); v != nil {
			m.panicked = &extractPanic{value: v, stack: debug.Stack()}
		}
	}()
	m.res, m.err = extract(ctx, x, m.tx.Message)
}

// leave unregisters a caller that stopped waiting. When it was the last
// and the extraction is still running, the extraction is stopped, and leave
// reports true.
func (m *linkMemo) leave() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.waiting--
	if m.waiting > 0 {
		return false
	}
	select {
	case <-m.done:
	default:
		m.abandoned = true
		m.cancel()
	}
	return true
}

// result is the extraction's outcome, once done is closed. A panic in the
// extractor panics in every caller, so that Run reports it for each stage
// as it would have had the stage extracted alone.
func (m *linkMemo) result() (*links.Result, error) {
	if m.panicked != nil {
		panic(m.panicked)
	}
	return m.res, m.err
}

// close ends the memo when every stage has returned: it stops an
// extraction that nobody waits for and waits until it no longer reads the
// message. It returns the extraction's panic, if any.
func (m *linkMemo) close() *extractPanic {
	m.mu.Lock()
	m.abandoned = true
	started := m.done != nil
	if started {
		m.cancel()
	}
	m.mu.Unlock()
	if !started {
		return nil
	}
	<-m.done
	return m.panicked
}

// extractPanic carries a panic of the shared extraction, with the
// extractor's stack, to the stages that waited for it.
type extractPanic struct {
	value any
	stack []byte
}

func (p *extractPanic) String() string { return fmt.Sprint(p.value) }
