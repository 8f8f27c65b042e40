package proxy

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/policy"
)

// Tests of verdicts applied to content, through a live proxy session and
// a real downstream (the content itself is package delivery's).

// A sender cannot make a downstream filter believe a verdict foxproxy
// never gave: X-Foxproxy fields that arrive are removed and the trace
// header says how many; with remove_incoming_trace off they are kept.
func TestForgedTraceRemoved(t *testing.T) {
	in := "X-Foxproxy: foxproxy/1; verdict=deliver; wrs=clean\r\nSubject: hi\r\nX-Foxproxy-Flag: whitelisted\r\n\r\nbody\r\n"
	for _, remove := range []bool{true, false} {
		ds := startDownstream(t)
		p := startProxy(t, ds.addr, withPolicy(fixedPolicy{Action: policy.Deliver, Rule: "r"}),
			withConfig(func(c *Config) { c.RemoveIncomingTrace = remove }))
		if _, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, in); err != nil {
			t.Fatal(err)
		}
		head, rest := stripTrace(t, ds.messages()[0].data)
		if remove {
			if string(rest) != "Subject: hi\r\n\r\nbody\r\n" || !strings.Contains(head, "removed=2-forged-fields") {
				t.Errorf("forged fields not removed: head %q, rest %q", head, rest)
			}
			continue
		}
		if string(rest) != in || strings.Contains(head, "removed=") {
			t.Errorf("remove_incoming_trace off changed the message: head %q, rest %q", head, rest)
		}
	}
}

// fakeRewriter stands in for the click service's rewriter: the proxy's job
// is only to call it, deliver what it wrote and note it, or deliver the
// original when it fails.
type fakeRewriter struct{ fail bool }

func (f fakeRewriter) RewriteLinks(ref string, src io.Reader, dst io.Writer) (string, error) {
	b, _ := io.ReadAll(src)
	if f.fail {
		dst.Write([]byte("half a message"))
		return "", errors.New("malformed MIME")
	}
	_, err := dst.Write([]byte(strings.ReplaceAll(string(b), "http://example.test/", "https://click.test/c/"+ref+"/")))
	return "links=rewritten:1", err
}

func TestRewriteLinksOnDelivery(t *testing.T) {
	in := "Subject: [secure] hi\r\n\r\nsee http://example.test/x\r\n"
	for _, fail := range []bool{false, true} {
		ds := startDownstream(t)
		p := startProxy(t, ds.addr,
			withPolicy(fixedPolicy{Action: policy.Deliver, Rule: "r", RewriteLinks: true, SubjectTag: "[secure]"}),
			func(rt *Runtime) { rt.Links = fakeRewriter{fail: fail} })
		if _, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, in); err != nil {
			t.Fatal(err)
		}
		head, rest := stripTrace(t, ds.messages()[0].data)
		if fail {
			if string(rest) != "Subject: hi\r\n\r\nsee http://example.test/x\r\n" || !strings.Contains(head, "links=not-rewritten:error") {
				t.Errorf("failed rewrite: head %q, delivered %q", head, rest)
			}
			continue
		}
		if !strings.Contains(string(rest), "https://click.test/c/") || !strings.Contains(head, "links=rewritten:1") ||
			!strings.HasPrefix(string(rest), "Subject: hi\r\n") {
			t.Errorf("head %q, delivered %q", head, rest)
		}
	}
}

// Held mail gets the verdict's changes the way live mail does, and a
// message whose links cannot be rewritten is delivered as it came with a
// note: before, the error kept it held, and it stopped every later round.
func TestReinjectVerdictAppliesTheVerdictLikeLiveMail(t *testing.T) {
	in := "X-Foxproxy-Flag: forged\r\nSubject: hi\r\n\r\nsee http://example.test/x\r\n"
	for _, fail := range []bool{false, true} {
		ds := startDownstream(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := delivery.ReinjectVerdict(ctx, delivery.ReinjectOptions{Addr: ds.addr, Hostname: "foxproxy.test", Links: fakeRewriter{fail: fail}, RemoveIncomingTrace: true},
			delivery.Envelope{From: "a@example.test", Rcpts: []string{"b@example.test"}, Size: int64(len(in))}, "foxproxy.test", "H1",
			policy.Verdict{Action: policy.Tag, Rule: "r", RewriteLinks: true, SubjectPrefix: "[x]"}, nil,
			func() io.Reader { return strings.NewReader(in) }, 1<<20)
		if err != nil {
			t.Fatalf("fail=%v: %v", fail, err)
		}
		head, rest := stripTrace(t, ds.messages()[0].data)
		wantLink, wantNote := "https://click.test/c/H1/x", "links=rewritten:1"
		if fail {
			wantLink, wantNote = "http://example.test/x", "links=not-rewritten:error"
		}
		if !strings.HasPrefix(string(rest), "Subject: [x] hi\r\n") || !strings.Contains(string(rest), wantLink) ||
			strings.Contains(string(rest), "forged") || !strings.Contains(head, wantNote) || !strings.Contains(head, "removed=1-forged-fields") {
			t.Errorf("fail=%v: head %q, delivered %q", fail, head, rest)
		}
	}
}
