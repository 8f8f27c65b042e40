package links

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// slowTwin is x with the multipart fast path off: every multipart goes
// through go-message, as before the fast path existed.
func slowTwin(x *Extractor) *Extractor {
	y := *x
	y.slowMIME = true
	return &y
}

// sameAsSlow asserts that x, with the fast path, gives exactly the result of
// its slow twin on msg, URL for URL and note for note, whether the input
// arrives in one read or in halves (which reach the read-ahead through the
// header reader). The one exception is Result.Bytes when MaxURLs stopped
// the extraction in the middle of a part: it counts what had been read by
// then, which depends on how large the reads of the part body were (as it
// already does on the caller's reads for a message that is not multipart).
func sameAsSlow(t *testing.T, x *Extractor, msg []byte) {
	t.Helper()
	for _, split := range []bool{false, true} {
		in := func() io.Reader {
			if split {
				return iotest.HalfReader(bytes.NewReader(msg))
			}
			return bytes.NewReader(msg)
		}
		fast := x.Extract(in())
		slow := slowTwin(x).Extract(in())
		if slices.ContainsFunc(slow.Notes, func(n string) bool { return strings.HasPrefix(n, "truncated after ") }) {
			fast.Bytes = slow.Bytes
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast path differs (split reads %v) on %q:\nfast %d URLs, notes %q, truncated %v, parts %d, bytes %d\nslow %d URLs, notes %q, truncated %v, parts %d, bytes %d\nfast %q\nslow %q",
				split, cutString(string(msg), 400),
				len(fast.URLs), fast.Notes, fast.Truncated, fast.Parts, fast.Bytes,
				len(slow.URLs), slow.Notes, slow.Truncated, slow.Parts, slow.Bytes,
				urlStrings(fast.URLs), urlStrings(slow.URLs))
		}
	}
}

// diffExtractors are the configurations compared: defaults, the fuzz
// limits, and limits small enough to stop in the middle of a multipart.
func diffExtractors(t testing.TB) []*Extractor {
	return []*Extractor{
		mustNew(t, Config{Redirectors: DefaultRedirectors()}),
		fuzzExtractor(t),
		mustNew(t, Config{StrictText: true, Limits: Limits{MaxURLs: 2, MaxParts: 3, MaxDepth: 2, MaxBytes: 300, MaxHeaderBytes: 120}}),
	}
}

// corpusMessages are the test messages of testdata and the FuzzExtract
// seeds.
func corpusMessages(t testing.TB) [][]byte {
	var msgs [][]byte
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, data)
	}
	seeds, _ := filepath.Glob("testdata/fuzz/FuzzExtract/*")
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		// "go test fuzz v1" then one []byte("...") line.
		_, arg, _ := strings.Cut(string(data), "\n")
		arg = strings.TrimSpace(arg)
		if !strings.HasPrefix(arg, "[]byte(") || !strings.HasSuffix(arg, ")") {
			t.Fatalf("%s: unexpected seed format", name)
		}
		s, err := strconv.Unquote(arg[len("[]byte(") : len(arg)-1])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		msgs = append(msgs, []byte(s))
	}
	if len(files) < 10 || len(seeds) < 10 {
		t.Fatalf("%d corpus files, %d seeds: testdata missing", len(files), len(seeds))
	}
	return append(msgs, benchMessage10K(), alternative10K(), longParts())
}

// longParts is a multipart whose parts are longer than go-message's 4 KiB
// buffer and hold more links than MaxURLs, so that extraction stops in the
// middle of a part.
func longParts() []byte {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n")
	for i := range 60 {
		fmt.Fprintf(&b, "line %d %s https://h%d.example.com/x\r\n", i, strings.Repeat("filler ", 20), i)
	}
	b.WriteString("\r\n--b\r\nContent-Type: text/html\r\n\r\n")
	for i := range 60 {
		fmt.Fprintf(&b, "<p>%s<a href=\"https://g%d.example.com/x\">x</a>\r\n", strings.Repeat("filler ", 20), i)
	}
	b.WriteString("\r\n--b--\r\n")
	return []byte(b.String())
}

// mutate makes a broken or unusual variant of msg: the edits that matter
// for multipart structure (line ends, dashes, boundaries, cuts).
func mutate(rng *rand.Rand, msg []byte) []byte {
	m := bytes.Clone(msg)
	for range 1 + rng.IntN(3) {
		if len(m) == 0 {
			return m
		}
		i := rng.IntN(len(m))
		switch rng.IntN(9) {
		case 0: // cut
			m = m[:i]
		case 1: // CRLF to LF, everywhere
			m = bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))
		case 2: // drop a byte
			m = append(m[:i], m[i+1:]...)
		case 3: // insert something structural
			ins := []string{"\r\n", "\n", "-", "--", " ", "\t", "\r", ":", "\r\n\r\n", "\r\n--", "\n--", "--\r\n"}[rng.IntN(12)]
			m = append(m[:i], append([]byte(ins), m[i:]...)...)
		case 4: // duplicate a line
			s := bytes.LastIndexByte(m[:i], '\n') + 1
			e := bytes.IndexByte(m[i:], '\n')
			if e >= 0 {
				line := bytes.Clone(m[s : i+e+1])
				m = append(m[:s], append(line, m[s:]...)...)
			}
		case 5: // a boundary line copied somewhere else
			if k := bytes.Index(m, []byte("\n--")); k >= 0 {
				e := bytes.IndexByte(m[k+1:], '\n')
				if e >= 0 {
					line := bytes.Clone(m[k+1 : k+2+e])
					m = append(m[:i], append(line, m[i:]...)...)
				}
			}
		case 6: // flip a byte
			m[i] ^= byte(1 << rng.IntN(8))
		case 7: // transport padding after a delimiter
			if k := bytes.Index(m[i:], []byte("\r\n--")); k >= 0 {
				if e := bytes.Index(m[i+k+2:], []byte("\r\n")); e >= 0 {
					at := i + k + 2 + e
					m = append(m[:at], append([]byte(" \t "), m[at:]...)...)
				}
			}
		case 8: // fold a header line
			if k := bytes.Index(m[i:], []byte("; ")); k >= 0 {
				at := i + k + 1
				m = append(m[:at], append([]byte("\r\n\t"), m[at+1:]...)...)
			}
		}
	}
	return m
}

// genMultipart builds a random MIME tree with the variations RFC 2046
// allows and the ones found in the wild: preamble and epilogue, transport
// padding, LF line ends, folded and repeated header fields, empty bodies,
// nested multiparts and messages, digests, missing close delimiters and
// lines that merely look like delimiters.
func genMultipart(rng *rand.Rand, depth int, nl string) string {
	boundary := []string{"b1", "alt-b1", "----=_Part_0_12345.6789", "x y", "==", "b'()+_,-./:=?"}[rng.IntN(6)] + strconv.Itoa(depth)
	sub := []string{"mixed", "alternative", "digest", "related"}[rng.IntN(4)]
	var b strings.Builder
	quote := rng.IntN(2) == 0 || strings.ContainsAny(boundary, " '()+,/:=?")
	if quote {
		fmt.Fprintf(&b, "Content-Type: multipart/%s; boundary=\"%s\"%s", sub, boundary, nl)
	} else {
		fmt.Fprintf(&b, "Content-Type: multipart/%s;%s\tboundary=%s%s", sub, nl, boundary, nl)
	}
	b.WriteString(nl)
	if rng.IntN(2) == 0 {
		b.WriteString("This is a multi-part message in MIME format." + nl + "--" + boundary + "x not a delimiter" + nl)
	}
	n := rng.IntN(4)
	for i := range n {
		b.WriteString("--" + boundary)
		if rng.IntN(6) == 0 {
			b.WriteString(" \t")
		}
		b.WriteString(nl)
		switch k := rng.IntN(8); {
		case k == 0 && depth < 3:
			b.WriteString(genMultipart(rng, depth+1, nl))
		case k == 1 && depth < 3:
			b.WriteString("Content-Type: message/rfc822" + nl + nl + "Subject: inner" + nl + genMultipart(rng, depth+1, nl))
		default:
			ct := []string{"text/plain; charset=utf-8", "text/html", "text/plain;" + nl + " charset=\"iso-8859-1\"", "application/octet-stream; name=\"a.html\"", ""}[rng.IntN(5)]
			if ct != "" || sub == "digest" {
				b.WriteString("Content-Type: " + ct + nl)
			}
			if rng.IntN(3) == 0 {
				b.WriteString("Content-Transfer-Encoding: " + []string{"7bit", "quoted-printable", "base64", "8bit"}[rng.IntN(4)] + nl)
			}
			if rng.IntN(4) == 0 {
				b.WriteString("content-type: text/html" + nl) // a repeated field
			}
			if rng.IntN(4) == 0 {
				b.WriteString("X-Long:" + strings.Repeat(" folded", 1+rng.IntN(30)) + nl + "  more" + nl)
			}
			b.WriteString(nl)
			if rng.IntN(5) > 0 {
				fmt.Fprintf(&b, "part %d at depth %d: see https://p%d.d%d.example.com/x?i=%d%s", i, depth, i, depth, rng.IntN(100), nl)
				fmt.Fprintf(&b, "<a href=\"http://h%d.example.org/\">www.w%d.example.net</a>%s", i, i, nl)
				if rng.IntN(4) == 0 {
					b.WriteString("--" + boundary + "-not-quite" + nl + "---" + boundary + nl)
				}
			}
		}
		if i == n-1 && rng.IntN(8) == 0 {
			return b.String() // no close delimiter
		}
	}
	b.WriteString(nl + "--" + boundary + "--")
	if rng.IntN(5) > 0 {
		b.WriteString(nl)
		if rng.IntN(2) == 0 {
			b.WriteString("epilogue http://epilogue.example.com/" + nl)
		}
	}
	return b.String()
}

func genMessage(rng *rand.Rand) []byte {
	nl := "\r\n"
	if rng.IntN(5) == 0 {
		nl = "\n"
	}
	return []byte("From: a@example.com" + nl + "MIME-Version: 1.0" + nl + genMultipart(rng, 0, nl))
}

// TestMultipartFastSame: the multipart fast path gives exactly the result
// of the go-message path, over the corpus, the fuzz seeds, mutations of
// them and random MIME trees, under default, fuzz and tight limits.
func TestMultipartFastSame(t *testing.T) {
	xs := diffExtractors(t)
	rng := rand.New(rand.NewPCG(21, 2))
	msgs := corpusMessages(t)
	rounds := 40
	if testing.Short() {
		rounds = 5
	}
	for _, msg := range msgs {
		for _, x := range xs {
			sameAsSlow(t, x, msg)
		}
		for range rounds {
			sameAsSlow(t, xs[rng.IntN(len(xs))], mutate(rng, msg))
		}
	}
	for range 60 * rounds {
		msg := genMessage(rng)
		if rng.IntN(3) == 0 {
			msg = mutate(rng, msg)
		}
		sameAsSlow(t, xs[rng.IntN(len(xs))], msg)
	}
}

// TestMultipartFastTaken: the well-formed messages do take the fast path
// (otherwise TestMultipartFastSame would compare the slow path with
// itself), and the broken structures do not.
func TestMultipartFastTaken(t *testing.T) {
	parts := func(msg string, boundary string) int {
		t.Helper()
		_, body, _ := strings.Cut(msg, "\r\n\r\n")
		ps, ok := parseMultipart([]byte(body), boundary, defaultMaxHeaderBytes, nil)
		if !ok {
			return -1
		}
		return len(ps)
	}
	if n := parts(string(benchMessage10K()), "alt-b1"); n != 2 {
		t.Errorf("bench message: %d parts on the fast path, want 2", n)
	}
	if n := parts(string(alternative10K()), "alt-b1"); n != 2 {
		t.Errorf("alternative10K: %d parts on the fast path, want 2", n)
	}
	const head = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"plain", "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n", 1},
		{"padding, preamble, epilogue", "pre\r\n--b \t\r\n\r\nhi\r\n--b\r\nX: y\r\n\r\n\r\n--b--  \r\nepi\r\n", 2},
		{"empty body", "--b\r\nX: y\r\n\r\n--b--", 1},
		{"LF lines", "--b\nX: y\n\nhi\n--b--\n", 1},
		{"no close delimiter", "--b\r\n\r\nhi\r\n", -1},
		{"close without CRLF mode", "--b\r\n\r\nhi\r\n--b--\n", -1},
		{"junk after boundary", "--b\r\n\r\nhi\r\n--b-x\r\n\r\n--b--\r\n", -1},
		{"header line without colon", "--b\r\nnot a field\r\n\r\nhi\r\n--b--\r\n", -1},
		{"bare LF before boundary", "--b\r\n\r\nhi\n--b\r\n\r\n--b--\r\n", -1},
		{"bare CR in header", "--b\r\nX: a\rb\r\n\r\nhi\r\n--b--\r\n", -1},
	} {
		if got := parts(head+c.body, "b"); got != c.want {
			t.Errorf("%s: %d parts, want %d", c.name, got, c.want)
		}
		for _, x := range diffExtractors(t) {
			sameAsSlow(t, x, []byte(head+c.body))
		}
	}
}

// FuzzMultipartFast compares the fast path with the go-message path on
// arbitrary input. Seeds: the corpus, the FuzzExtract seeds and random MIME
// trees.
func FuzzMultipartFast(f *testing.F) {
	for _, msg := range corpusMessages(f) {
		if len(msg) < 32<<10 {
			f.Add(msg)
		}
	}
	rng := rand.New(rand.NewPCG(21, 3))
	for range 30 {
		f.Add(genMessage(rng))
	}
	xs := diffExtractors(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, x := range xs {
			sameAsSlow(t, x, data)
		}
	})
}

// contentTypeSeeds are Content-Type values plain and odd.
var contentTypeSeeds = []string{
	"text/plain", "text/plain; charset=utf-8", `text/html; charset="UTF-8"`, "TEXT/HTML;CHARSET=ISO-8859-1",
	`multipart/alternative; boundary="----=_Part_0_1.2"`, "multipart/mixed;\tboundary=b1 ", "multipart/mixed; boundary=b1;",
	"multipart/mixed; boundary=b1; ;", "multipart/mixed; boundary=", `multipart/mixed; boundary=""`, "text/plain; charset=a; charset=a",
	"text/plain; charset=a; charset=b", "text/plain; name*=utf-8''a%20b.html", "text/plain; name*0=a; name*1=b.html",
	`application/octet-stream; name="a.html"`, `text/plain; name="a\"b"`, `text/plain; name="a\\b"`, "text/plain; name=\"a\rb\"",
	"text", "text/", "/plain", "text/plain/x", "text /plain", " text/plain ", "text/plain x", "text/plain;x", "text/plain; x=",
	"text/plain; =x", "text/plain;; charset=utf-8", "text/plain; charset = utf-8", "text/plain\u00a0; charset=utf-8",
	"text/plain; charset=\u00e9", "text/plain; a=1; b=2; c=3; d=4; e=5; f=6; g=7; h=8; i=9", "text/plain; charset=utf-8 (comment)",
	"text/plain; charset=\"utf-8", "\x0btext/plain\x0c;\x0bcharset=x", "", ";", "text/plain;\r\n charset=utf-8",
}

func TestContentTypeOfSameAsParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	inputs := slices.Clone(contentTypeSeeds)
	for range 3000 {
		a := []byte(contentTypeSeeds[rng.IntN(len(contentTypeSeeds))])
		b := contentTypeSeeds[rng.IntN(len(contentTypeSeeds))]
		if len(a) > 0 {
			i := rng.IntN(len(a))
			switch rng.IntN(3) {
			case 0:
				a = append(a[:i], append([]byte(`;"= \t*\\`[rng.IntN(7):][:1]), a[i:]...)...)
			case 1:
				a = append(a[:i], b...)
			case 2:
				a[i] = byte(rng.IntN(128))
			}
		}
		inputs = append(inputs, string(a))
	}
	simple := 0
	for _, v := range inputs {
		checkContentType(t, v)
		if _, _, ok := simpleContentType(v); ok {
			simple++
		}
	}
	if simple < len(inputs)/10 {
		t.Fatalf("only %d of %d values read the simple way", simple, len(inputs))
	}
}

func checkContentType(t *testing.T, v string) {
	t.Helper()
	mt, p := contentTypeOf(v)
	wantMT, m := parseContentType(v)
	want := ctParams{boundary: m["boundary"], charset: m["charset"], name: m["name"]}
	if mt != wantMT || p != want {
		t.Fatalf("contentTypeOf(%q) = %q %+v, parseContentType %q %+v", v, mt, p, wantMT, want)
	}
}

// FuzzContentType: contentTypeOf agrees with parseContentType.
func FuzzContentType(f *testing.F) {
	for _, s := range contentTypeSeeds {
		f.Add(s)
	}
	f.Fuzz(checkContentType)
}
