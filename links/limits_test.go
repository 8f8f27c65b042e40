package links

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

func extractString(x *Extractor, msg string) *Result {
	return x.Extract(strings.NewReader(msg))
}

func mustNew(t testing.TB, cfg Config) *Extractor {
	t.Helper()
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// countingReader counts what the extractor reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestHugeMessageHeader: a message header of any size costs no memory and
// does not keep the body from being decoded, wherever its MIME fields are.
func TestHugeMessageHeader(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Subject: big\r\n")
	for b.Len() < 20<<20 {
		b.WriteString("X-Junk: a\r\n")
	}
	b.WriteString("X-Long: " + strings.Repeat("y", 1<<20) + "\r\n")
	b.WriteString("Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString("PGEgaHJlZj0iaHR0cHM6Ly9hZnRlci1oZWFkZXIuZXhhbXBsZS8iPng8L2E+\r\n") // <a href="https://after-header.example/">x</a>
	msg := b.Bytes()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := mustNew(t, Config{}).Extract(bytes.NewReader(msg))
	runtime.ReadMemStats(&after)

	diffList(t, "urls", urlStrings(res.URLs), []string{"1 href https://after-header.example/"})
	diffList(t, "notes", res.Notes, nil)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("allocated %d KiB for a 21 MiB header", alloc>>10)
	}
}

// TestHugePartHeader: go-message reads part headers without a limit; the
// guard stops a 20 MiB one at MaxHeaderBytes, and the text after it is
// still read.
func TestHugePartHeader(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nfirst https://first.example/\r\n--B\r\n")
	for b.Len() < 20<<20 {
		b.WriteString("a: b\r\n")
	}
	b.WriteString("\r\nhttps://after-big-header.example/\r\n--B\r\nContent-Type: text/plain\r\n\r\nhttps://next-part.example/\r\n--B--\r\n")
	msg := b.Bytes()
	x := mustNew(t, Config{})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := x.Extract(bytes.NewReader(msg))
	runtime.ReadMemStats(&after)

	diffList(t, "urls", urlStrings(res.URLs), []string{
		"1 text https://first.example/",
		"2 text https://after-big-header.example/",
		"2 text https://next-part.example/",
	})
	diffList(t, "notes", res.Notes, []string{"part 2: header larger than 65536 bytes, rest of the multipart read as plain text"})
	if !res.Truncated {
		t.Error("not truncated")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 12<<20 {
		t.Errorf("allocated %d MiB for a 20 MiB part header", alloc>>20)
	}
}

// TestPartHeaderGuardIgnoresBody: body lines that start like the boundary,
// a big preamble and a big epilogue are not part headers, and a large real
// part header under the limit passes.
func TestPartHeaderGuardIgnoresBody(t *testing.T) {
	filler := strings.Repeat("--Bx not a boundary\r\n", 20000)                          // 420 KB, no blank line
	bigHeader := strings.Repeat("X-Filler: 0123456789abcdef0123456789abcdef\r\n", 1300) // 57 KB
	msg := "Content-Type: multipart/mixed; boundary=B\r\n\r\n" + strings.Repeat("preamble\r\n", 20000) +
		"--B\r\nContent-Type: text/plain\r\n\r\n" + filler + "https://end.example/\r\n" +
		"--B\r\n" + bigHeader + "Content-Type: text/plain\r\n\r\nhttps://big-header.example/\r\n" +
		"--B--\r\nepilogue\r\n" + strings.Repeat("x\r\n", 200000)
	res := extractString(mustNew(t, Config{}), msg)
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 text https://end.example/", "2 text https://big-header.example/"})
	diffList(t, "notes", res.Notes, nil)
}

func nested(levels int) string {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=L0\r\n\r\n")
	for i := range levels {
		fmt.Fprintf(&b, "--L%d\r\nContent-Type: text/plain\r\n\r\nhttps://level%d.example/\r\n--L%d\r\nContent-Type: multipart/mixed; boundary=L%d\r\n\r\n", i, i, i, i+1)
	}
	for i := levels; i >= 0; i-- {
		fmt.Fprintf(&b, "--L%d--\r\n", i)
	}
	return b.String()
}

func TestMaxDepth(t *testing.T) {
	res := extractString(mustNew(t, Config{}), nested(15))
	var want []string
	path := ""
	for i := range 10 {
		want = append(want, joinPath(path, 1)+" text https://level"+itoa(i)+".example/")
		path = joinPath(path, 2)
	}
	diffList(t, "urls", urlStrings(res.URLs), want)
	diffList(t, "notes", res.Notes, []string{"part 2.2.2.2.2.2.2.2.2.2.1: nested deeper than 10, skipped", "part 2.2.2.2.2.2.2.2.2.2.2: nested deeper than 10, skipped"})
	if !res.Truncated {
		t.Error("not truncated")
	}
}

func TestNestedMessages(t *testing.T) {
	msg := "Content-Type: text/plain\r\n\r\nhttps://innermost.example/\r\n"
	for range 20 {
		msg = "Content-Type: message/rfc822\r\n\r\n" + msg
	}
	res := extractString(mustNew(t, Config{}), msg)
	if len(res.URLs) != 0 || !res.Truncated {
		t.Errorf("urls %v truncated %v", res.URLs, res.Truncated)
	}
	res = extractString(mustNew(t, Config{Limits: Limits{MaxDepth: 25}}), msg)
	if len(res.URLs) != 1 || res.URLs[0].Host != "innermost.example" {
		t.Errorf("urls %v notes %v", urlStrings(res.URLs), res.Notes)
	}
}

func TestMaxParts(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=P\r\n\r\n")
	for i := range 200 {
		fmt.Fprintf(&b, "--P\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
		if i == 5 || i == 150 {
			fmt.Fprintf(&b, "https://part%d.example/\r\n", i)
		}
	}
	b.WriteString("--P--\r\n")
	res := extractString(mustNew(t, Config{}), b.String())
	diffList(t, "urls", urlStrings(res.URLs), []string{"6 text https://part5.example/"})
	diffList(t, "notes", res.Notes, []string{"stopped after 100 MIME parts"})
	if res.Parts != 100 || !res.Truncated {
		t.Errorf("parts %d truncated %v", res.Parts, res.Truncated)
	}
}

func TestMaxBytes(t *testing.T) {
	msg := "Content-Type: text/plain\r\n\r\nhttps://early.example/ " + strings.Repeat("filler text ", 100000) + " https://late.example/\r\n"
	res := extractString(mustNew(t, Config{Limits: Limits{MaxBytes: 64 << 10}}), msg)
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 text https://early.example/"})
	diffList(t, "notes", res.Notes, []string{"stopped after 65536 bytes of text"})
	if res.Bytes != 64<<10 || !res.Truncated {
		t.Errorf("bytes %d truncated %v", res.Bytes, res.Truncated)
	}
	res = extractString(mustNew(t, Config{}), msg)
	if len(res.URLs) != 2 || res.Truncated {
		t.Errorf("default limit: urls %v notes %v", urlStrings(res.URLs), res.Notes)
	}
}

func TestMaxInputBytes(t *testing.T) {
	attachment := strings.Repeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", 30000) // 2.3 MB
	msg := "Content-Type: multipart/mixed; boundary=I\r\n\r\n--I\r\nContent-Type: text/plain\r\n\r\nhttps://before.example/\r\n" +
		"--I\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + attachment +
		"--I\r\nContent-Type: text/plain\r\n\r\nhttps://after.example/\r\n--I--\r\n"
	cr := &countingReader{r: strings.NewReader(msg)}
	res := mustNew(t, Config{Limits: Limits{MaxInputBytes: 1 << 20}}).Extract(cr)
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 text https://before.example/"})
	diffList(t, "notes", res.Notes, []string{"stopped after 1048576 bytes of input"})
	if cr.n > 1<<20+1 { // one byte more tells a cut message from an exact fit
		t.Errorf("read %d bytes, limit 1 MiB", cr.n)
	}
	res = extractString(mustNew(t, Config{}), msg)
	diffList(t, "urls (default limit)", urlStrings(res.URLs), []string{"1 text https://before.example/", "3 text https://after.example/"})
}

// TestStopsReading: once MaxURLs is reached the rest of the input is left
// unread.
func TestStopsReading(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: text/html\r\n\r\n")
	for i := range 60 {
		fmt.Fprintf(&b, "<a href=\"https://d%d.example/\">x</a>\n", i)
	}
	b.WriteString(strings.Repeat("<p>filler</p>\n", 1<<20))
	cr := &countingReader{r: strings.NewReader(b.String())}
	res := mustNew(t, Config{}).Extract(cr)
	if len(res.URLs) != 50 || !res.Truncated {
		t.Fatalf("%d URLs, truncated %v", len(res.URLs), res.Truncated)
	}
	if cr.n > 256<<10 {
		t.Errorf("read %d bytes after the URL limit", cr.n)
	}
}

func TestMaxNotes(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: text/plain\r\n\r\n")
	for i := range 100 {
		fmt.Fprintf(&b, "http://bad%d..example/\r\n", i)
	}
	res := extractString(mustNew(t, Config{}), b.String())
	if len(res.Notes) != maxNotes-1 || res.Notes[len(res.Notes)-1] != "82 more notes" {
		t.Errorf("%d notes, last %q", len(res.Notes), res.Notes[len(res.Notes)-1])
	}
	// A stop note is kept even when the notes are full.
	b.WriteString(strings.Repeat("x ", 100000))
	res = extractString(mustNew(t, Config{Limits: Limits{MaxBytes: 10000}}), b.String())
	if len(res.Notes) != maxNotes || res.Notes[maxNotes-1] != "stopped after 10000 bytes of text" {
		t.Errorf("%d notes: %q", len(res.Notes), res.Notes[len(res.Notes)-2:])
	}
}

// TestLongToken: text with no white space for much longer than the token
// buffer still yields its URLs, once each.
func TestLongToken(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: text/plain\r\n\r\n")
	var want []string
	for i := range 40 {
		b.WriteString(strings.Repeat("x", 5000+i*37))
		fmt.Fprintf(&b, `"http://u%d.example/p"`, i)
		want = append(want, "1 text http://u"+itoa(i)+".example/p")
	}
	b.WriteString("\r\n")
	res := extractString(mustNew(t, Config{}), b.String())
	diffList(t, "urls", urlStrings(res.URLs), want)
}

// TestQuotedPrintableNeedsCleaning documents why qpClean exists: the
// standard decoder gives up on this part, mail clients do not.
func TestQuotedPrintableNeedsCleaning(t *testing.T) {
	body := "https://before.example/ " + strings.Repeat("x", 6000) + " https://after.example/\r\nbell\x07 https://ctl.example/\r\n"
	got, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	if err == nil || strings.Contains(string(got), "after.example") {
		t.Fatalf("mime/quotedprintable now copes (err %v); qpClean may be unnecessary", err)
	}
	got, err = io.ReadAll(quotedprintable.NewReader(&qpClean{r: strings.NewReader(body)}))
	if err != nil || !strings.Contains(string(got), "https://after.example/") || !strings.Contains(string(got), "https://ctl.example/") {
		t.Fatalf("after qpClean: %v", err)
	}
	if want := strings.ReplaceAll(body, "\x07", " "); string(got) != want {
		t.Errorf("qpClean changed the decoded text")
	}
}

// TestReadBoundaries: the result does not depend on how the input is
// split into reads (the guards and cleaners keep state across reads).
func TestReadBoundaries(t *testing.T) {
	x := mustNew(t, Config{Redirectors: DefaultRedirectors()})
	files, _ := filepath.Glob("testdata/*.eml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := x.Extract(bytes.NewReader(data))
		for name, r := range map[string]io.Reader{
			"one byte": iotest.OneByteReader(bytes.NewReader(data)),
			"half":     iotest.HalfReader(bytes.NewReader(data)),
			"data+err": iotest.DataErrReader(bytes.NewReader(data)),
		} {
			got := x.Extract(r)
			if !slices.Equal(urlStrings(got.URLs), urlStrings(want.URLs)) || !slices.Equal(got.Notes, want.Notes) {
				t.Errorf("%s, %s reads:\n got %q %q\nwant %q %q", f, name, urlStrings(got.URLs), got.Notes, urlStrings(want.URLs), want.Notes)
			}
		}
	}
}

// TestReadError: an I/O error from the caller's reader keeps what was found.
func TestReadError(t *testing.T) {
	msg := "Content-Type: text/plain\r\n\r\nhttps://before-error.example/ and more "
	r := io.MultiReader(strings.NewReader(msg), iotest.ErrReader(errors.New("disk on fire")))
	res := mustNew(t, Config{}).Extract(r)
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 text https://before-error.example/"})
	diffList(t, "notes", res.Notes, []string{"part 1: disk on fire"})
}

func TestEmptyAndGarbage(t *testing.T) {
	x := mustNew(t, Config{})
	for _, in := range []string{"", "\r\n", "no header at all", "\x00\x01\x02", "Content-Type: multipart/mixed\r\n\r\nhttps://no-boundary.example/\r\n"} {
		res := extractString(x, in)
		if res == nil {
			t.Fatalf("nil result for %q", in)
		}
		t.Logf("%q: %v %q", in, urlStrings(res.URLs), res.Notes)
	}
	res := extractString(x, "Content-Type: multipart/mixed\r\n\r\nhttps://no-boundary.example/\r\n")
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 text https://no-boundary.example/"})
	diffList(t, "notes", res.Notes, []string{"message: multipart/mixed without boundary, read as plain text"})
}

func TestConcurrentUse(t *testing.T) {
	x := mustNew(t, Config{Redirectors: DefaultRedirectors()})
	files, _ := filepath.Glob("testdata/*.eml")
	var wg sync.WaitGroup
	for range 4 {
		for _, f := range files {
			wg.Go(func() {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Error(err)
					return
				}
				x.Extract(bytes.NewReader(data))
			})
		}
	}
	wg.Wait()
}

func TestExactInputLimit(t *testing.T) {
	msg := "Content-Type: text/plain\r\n\r\nhttps://exact.example/\r\n"
	res := extractString(mustNew(t, Config{Limits: Limits{MaxInputBytes: int64(len(msg))}}), msg)
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 text https://exact.example/"})
	if res.Truncated || len(res.Notes) != 0 {
		t.Errorf("truncated %v notes %q", res.Truncated, res.Notes)
	}
}

func TestFoldedHeader(t *testing.T) {
	msg := "Subject: x\r\nContent-Type:\r\n multipart/alternative;\r\n\tboundary=\"folded\"\r\nContent-Type: text/plain\r\n\r\n" +
		"--folded\r\nContent-Type: text/html;\r\n charset=utf-8\r\n\r\n<a href=\"https://folded.example/\">x</a>\r\n--folded--\r\n"
	res := extractString(mustNew(t, Config{}), msg)
	diffList(t, "urls", urlStrings(res.URLs), []string{"1 href https://folded.example/"})
	diffList(t, "notes", res.Notes, nil)
}
