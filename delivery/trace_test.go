package delivery

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/internal/testutil"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
)

// FuzzPrefixSubject checks the subject rewrite of a tag verdict: the body
// streams through unchanged, nothing of the message is lost, and the
// header ends up with exactly one Subject, carrying the prefix.
func FuzzPrefixSubject(f *testing.F) {
	for _, s := range testutil.HeaderSeeds {
		f.Add([]byte(s))
	}
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		// Only well-formed heads: CRLF lines, a blank line, within limit.
		head, body, ok := splitHead(data)
		if !ok || len(head)+2 > limit || strings.ContainsAny(head, "\x00") ||
			strings.ContainsAny(strings.ReplaceAll(head, "\r\n", ""), "\r\n") {
			return
		}
		if subjectLines(head) > 1 {
			return // a message with two Subjects is not this property's
		}
		out, err := io.ReadAll(prefixSubject(bytes.NewReader(data), "[TAG] ", limit))
		if err != nil {
			t.Fatal(err)
		}
		ohead, obody, ok := splitHead(out)
		if !ok || obody != body {
			t.Fatalf("body changed:\n in %q\nout %q", data, out)
		}
		if n := subjectLines(ohead); n != 1 || !strings.HasPrefix(ohead, "Subject: [TAG]") && !strings.Contains(ohead, "\r\nSubject: [TAG]") {
			t.Fatalf("%d Subject lines after the rewrite, or none with the prefix:\n in %q\nout %q", n, head, ohead)
		}
		if len(out) < len(data) {
			t.Fatalf("%d bytes out of %d in", len(out), len(data))
		}
	})
}

// splitHead splits a message at the blank line that ends its header.
func splitHead(b []byte) (head, body string, ok bool) {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return "", string(b[2:]), true
	}
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return "", "", false
	}
	return string(b[:i+2]), string(b[i+4:]), true
}

// subjectLines counts the header lines that start a Subject field.
func subjectLines(head string) int {
	n := 0
	for _, l := range strings.Split(head, "\r\n") {
		if len(l) >= 8 && strings.EqualFold(l[:8], "subject:") {
			n++
		}
	}
	return n
}

// Regression (issue 9, found by FuzzPrefixSubject): a Subject line longer
// than the reader's 4 KiB buffer was not recognised, so a tag verdict
// added a second Subject after the untagged one (mail readers show the
// first); and a long line whose CRLF fell just past the buffer read as the
// end of the header, so a later Subject was not tagged either.
func TestPrefixSubjectLongLines(t *testing.T) {
	long := "Subject: " + strings.Repeat("x", 6000) + "\r\n"
	boundary := "X-Long: " + strings.Repeat("y", 4096-len("X-Long: ")) + "\r\n" // CRLF right after 4096 bytes
	for name, msg := range map[string]string{
		"long subject":           "From: a@example.test\r\n" + long + "\r\nbody\r\n",
		"CRLF past the buffer":   boundary + "Subject: short\r\n\r\nbody\r\n",
		"long subject, boundary": boundary + long + "\r\nbody\r\n",
	} {
		out, err := io.ReadAll(prefixSubject(strings.NewReader(msg), "[SPAM] ", 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		head, body, ok := splitHead(out)
		if !ok || body != "body\r\n" || subjectLines(head) != 1 || !strings.Contains("\r\n"+head, "\r\nSubject: [SPAM] ") {
			t.Errorf("%s: %d Subject lines, body %q:\n%.300q", name, subjectLines(head), body, head)
		}
	}
}

// traceFindings are what a message with ERS, WRS and scan on gets.
var traceFindings = []pipeline.Finding{
	{Stage: "ers", Status: pipeline.Clean},
	{Stage: "wrs", Status: pipeline.Listed, Categories: []string{"phish", "spam"}},
	{Stage: "scan", Status: pipeline.Clean, Backend: "smart"},
}

// BenchmarkTraceHeader renders the X-Foxproxy header of a message with
// three findings (folded onto two lines).
func BenchmarkTraceHeader(b *testing.B) {
	v := policy.Verdict{Action: policy.Tag, Rule: "wrs-spam"}
	b.ReportAllocs()
	for b.Loop() {
		if h := traceHeader("mx.example.org", "7ubt2krp4qj5dwoc", v, traceFindings); !strings.HasPrefix(h, "X-Foxproxy: ") {
			b.Fatal(h)
		}
	}
}

// BenchmarkFoldHeader is a policy's added header (one short part).
func BenchmarkFoldHeader(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		FoldHeader("X-Foxproxy-Flag", []string{"wrs-spam"})
	}
}

// message10K is a 10 KB message with a Subject in a header block of ten
// lines.
func message10K() string {
	var s strings.Builder
	s.WriteString(testutil.TinyMessage[:strings.Index(testutil.TinyMessage, "\r\n\r\n")+4])
	for s.Len() < 10<<10 {
		s.WriteString("A line of a typical message body, about seventy characters long...\r\n")
	}
	return s.String()
}

// BenchmarkPrefixSubject is a tag verdict's subject prefix on a 10 KB
// message: the header block is rewritten, the body streams through.
// SetBytes counts the whole message, which is read to the end.
func BenchmarkPrefixSubject(b *testing.B) {
	msg := message10K()
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r := prefixSubject(strings.NewReader(msg), "[SPAM] ", 1<<20)
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			b.Fatal(err)
		}
	}
}
