package proxy

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/policy"
)

func TestRemoveSubjectTag(t *testing.T) {
	cases := map[string]string{
		"Subject: [secure] contract\r\n\r\nbody [secure]\r\n":         "Subject: contract\r\n\r\nbody [secure]\r\n",
		"From: a\r\nsubject: Contract [SECURE]\r\n\r\nb\r\n":          "From: a\r\nsubject: Contract\r\n\r\nb\r\n",
		"Subject: Re: [Secure] x\r\n\tfolded\r\n\r\nb\r\n":            "Subject: Re: x\r\n\tfolded\r\n\r\nb\r\n",
		"Subject: nothing here\r\nX-Tag: [secure]\r\n\r\nb\r\n":       "Subject: nothing here\r\nX-Tag: [secure]\r\n\r\nb\r\n",
		"Subject: [secure]\r\n\r\nb\r\n":                              "Subject:\r\n\r\nb\r\n",
		"X-Other: 1\r\n\r\nSubject: [secure] body line\r\n":           "X-Other: 1\r\n\r\nSubject: [secure] body line\r\n",
		"Subject: two [secure] tags [secure]\r\n\r\nb\r\n":            "Subject: two tags [secure]\r\n\r\nb\r\n",
		"Subject: " + strings.Repeat("x", 5000) + " [secure]\r\n\r\n": "Subject: " + strings.Repeat("x", 5000) + " [secure]\r\n\r\n",
	}
	for in, want := range cases {
		got, err := io.ReadAll(removeSubjectTag(strings.NewReader(in), "[secure]", 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("in %.60q:\n got %.80q\nwant %.80q", in, got, want)
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
		_, err := ReinjectVerdict(ctx, ReinjectOptions{Addr: ds.addr, Hostname: "foxproxy.test", Links: fakeRewriter{fail: fail}, RemoveIncomingTrace: true},
			Envelope{From: "a@example.test", Rcpts: []string{"b@example.test"}, Size: int64(len(in))}, "foxproxy.test", "H1",
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
