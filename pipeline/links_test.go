package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/links"
)

const linkMail = "From: a@x.example\r\nSubject: s\r\n\r\nsee https://one.example/a and https://two.example/b\r\n"

// countingContent is a message that counts how often it is opened.
type countingContent struct {
	body  string
	opens atomic.Int32
}

func (c *countingContent) Size() int64 { return int64(len(c.body)) }
func (c *countingContent) Open() io.Reader {
	c.opens.Add(1)
	return bytes.NewReader([]byte(c.body))
}

// linkStage asks for the links with its extractor and keeps what it got.
type linkStage struct {
	name string
	x    *links.Extractor
	// ctxOf, when set, derives the context the stage asks with.
	ctxOf func(context.Context) context.Context
	// asking, when set, receives Run's link memo before the stage asks.
	asking chan<- *linkMemo

	res *links.Result
	err error
}

func (s *linkStage) Name() StageName { return StageName(s.name) }
func (s *linkStage) Inspect(ctx context.Context, tx *Transaction) Finding {
	if s.ctxOf != nil {
		ctx = s.ctxOf(ctx)
	}
	if s.asking != nil {
		m, _ := ctx.Value(linksKey{}).(*linkMemo)
		s.asking <- m
	}
	s.res, s.err = tx.Links(ctx, s.x)
	return Finding{Status: Clean}
}

func newExtractor(t *testing.T, cfg links.Config) *links.Extractor {
	t.Helper()
	x, err := links.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func hosts(r *links.Result) []string {
	if r == nil {
		return nil
	}
	var hs []string
	for _, u := range r.URLs {
		hs = append(hs, u.Host)
	}
	return hs
}

// Stages whose extractors are the Same share one extraction per Run;
// others, and callers outside Run, extract on their own.
func TestLinksShared(t *testing.T) {
	a := newExtractor(t, links.Config{})
	same := newExtractor(t, links.Config{Limits: links.Limits{MaxURLs: 50}}) // the default, spelt out
	other := newExtractor(t, links.Config{StrictText: true})
	want := []string{"one.example", "two.example"}
	cases := []struct {
		name  string
		x     *links.Extractor
		opens int32
	}{
		{"same extractor", a, 1},
		{"equal settings", same, 1},
		{"other settings", other, 2},
	}
	for _, c := range cases {
		msg := &countingContent{body: linkMail}
		tx := &Transaction{Message: msg}
		s1, s2 := &linkStage{name: "wrs", x: a}, &linkStage{name: "lists", x: c.x}
		if _, err := New(s1, s2).Run(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
		if s1.err != nil || s2.err != nil || !slices.Equal(hosts(s1.res), want) || !slices.Equal(hosts(s2.res), want) {
			t.Errorf("%s: got %v (%v) and %v (%v)", c.name, hosts(s1.res), s1.err, hosts(s2.res), s2.err)
		}
		if n := msg.opens.Load(); n != c.opens {
			t.Errorf("%s: message read %d times, want %d", c.name, n, c.opens)
		}
		if (c.opens == 1) != (s1.res == s2.res) {
			t.Errorf("%s: results shared: %v", c.name, s1.res == s2.res)
		}
	}

	// Outside Run: every call extracts.
	msg := &countingContent{body: linkMail}
	tx := &Transaction{Message: msg}
	for range 2 {
		if r, err := tx.Links(context.Background(), a); err != nil || !slices.Equal(hosts(r), want) {
			t.Fatalf("outside Run: %v, %v", hosts(r), err)
		}
	}
	if n := msg.opens.Load(); n != 2 {
		t.Errorf("outside Run: message read %d times, want 2", n)
	}
	// No message: no links, no error.
	if r, err := (&Transaction{}).Links(context.Background(), a); err != nil || r == nil || len(r.URLs) != 0 {
		t.Errorf("no message: %+v, %v", r, err)
	}
}

// gatedContent is a message read in parts, one a Read; the Read of the
// second part blocks until the gate opens.
type gatedContent struct {
	parts   []string
	blocked chan struct{} // closed when a reader waits at the gate
	gate    chan struct{}
	once    sync.Once
}

func newGated(parts ...string) *gatedContent {
	return &gatedContent{parts: parts, blocked: make(chan struct{}), gate: make(chan struct{})}
}

func (g *gatedContent) Size() int64 { return int64(len(strings.Join(g.parts, ""))) }
func (g *gatedContent) Open() io.Reader {
	i := 0
	return readerFunc(func(p []byte) (int, error) {
		if i == len(g.parts) {
			return 0, io.EOF
		}
		if i == 1 {
			g.once.Do(func() { close(g.blocked) })
			<-g.gate
		}
		i++
		return copy(p, g.parts[i-1]), nil // the parts are short
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// waitWaiting waits until n callers wait for m's extraction.
func waitWaiting(t *testing.T, m *linkMemo, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		w := m.waiting
		m.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A caller whose context ends mid-extraction gets an error, not a
// truncated result; the extraction goes on for the other caller, which gets
// every link.
func TestLinksFirstCallerCancelled(t *testing.T) {
	x := newExtractor(t, links.Config{})
	msg := newGated("From: a@x.example\r\n\r\nsee https://one.example/\r\n", "and https://two.example/\r\n",
		"and https://three.example/\r\n")
	tx := &Transaction{Message: msg}
	asking := make(chan *linkMemo, 2)
	var cancelFirst context.CancelFunc
	first := &linkStage{name: "wrs", x: x, asking: asking, ctxOf: func(ctx context.Context) context.Context {
		ctx, cancelFirst = context.WithCancel(ctx)
		return ctx
	}}
	// The second stage asks once the first one's extraction is under way.
	second := &linkStage{name: "lists", x: x, ctxOf: func(ctx context.Context) context.Context {
		<-msg.blocked
		return ctx
	}}
	done := make(chan error)
	go func() {
		_, err := New(first, second).Run(context.Background(), tx)
		done <- err
	}()
	m := <-asking
	waitWaiting(t, m, 2)
	cancelFirst()
	waitWaiting(t, m, 1)
	close(msg.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if first.res != nil || !errors.Is(first.err, context.Canceled) {
		t.Errorf("cancelled caller: %v, %v", hosts(first.res), first.err)
	}
	want := []string{"one.example", "two.example", "three.example"}
	if second.err != nil || !slices.Equal(hosts(second.res), want) {
		t.Errorf("other caller: %v, %v; want %v", hosts(second.res), second.err, want)
	}
}

// When the last caller gives up, the extraction stops: that caller gets
// the links found so far with its context's error, and Run does not wait
// for the rest of the message.
func TestLinksLastCallerCancelled(t *testing.T) {
	x := newExtractor(t, links.Config{})
	msg := newGated("From: a@x.example\r\n\r\nsee https://one.example/\r\n", "and https://two.example/\r\n",
		"and https://three.example/\r\n")
	tx := &Transaction{Message: msg}
	asking := make(chan *linkMemo, 1)
	var cancel context.CancelFunc
	s := &linkStage{name: "wrs", x: x, asking: asking, ctxOf: func(ctx context.Context) context.Context {
		ctx, cancel = context.WithCancel(ctx)
		return ctx
	}}
	done := make(chan error)
	go func() {
		_, err := New(s).Run(context.Background(), tx)
		done <- err
	}()
	m := <-asking
	<-msg.blocked
	waitWaiting(t, m, 1)
	cancel()
	waitWaiting(t, m, 0)
	close(msg.gate) // the blocked read returns; the next one sees the cancellation
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(s.err, context.Canceled) || !slices.Equal(hosts(s.res), []string{"one.example", "two.example"}) {
		t.Errorf("got %v, %v; want the links before the cancellation and context.Canceled", hosts(s.res), s.err)
	}
	// Asking again in the same Run would extract anew: the memo is abandoned.
	if !m.abandoned {
		t.Error("memo not abandoned")
	}
}

type panicContent struct{}

func (panicContent) Size() int64     { return 0 }
func (panicContent) Open() io.Reader { panic("boom") }

// A panic in the shared extraction is a panic of each stage that waited
// for it, reported by Run with its value; it does not crash the process.
func TestLinksPanic(t *testing.T) {
	x := newExtractor(t, links.Config{})
	fs, err := New(&linkStage{name: "wrs", x: x}, &linkStage{name: "lists", x: x}).Run(context.Background(),
		&Transaction{Message: panicContent{}})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Stage != "wrs" || pe.Value != "boom" || !bytes.Contains(pe.Stack, []byte("panicContent")) {
		t.Fatalf("err = %#v", err)
	}
	if fs[0].Status != Error || fs[1].Status != Error {
		t.Fatalf("findings %+v", fs)
	}
}
