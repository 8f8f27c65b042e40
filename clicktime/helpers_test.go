package clicktime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html"
	"io"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

const testBase = "https://click.example.org"

func testKey(id string) Key {
	return Key{ID: id, Secret: bytes.Repeat([]byte(id+"-secret-"), 8)}
}

func testSigner(t testing.TB, ids ...string) *Signer {
	t.Helper()
	var keys []Key
	for _, id := range ids {
		keys = append(keys, testKey(id))
	}
	s, err := NewSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// piece is one piece of a test message: literal bytes that must come out
// unchanged, or the raw body of a text part that may be rewritten.
type piece struct {
	lit string
	// For a body: its raw (encoded) bytes, transfer encoding and type.
	body, cte string
	html      bool
	isBody    bool
}

func lit(s string) piece { return piece{lit: s} }

func body(cte string, isHTML bool, raw string) piece {
	return piece{body: raw, cte: cte, html: isHTML, isBody: true}
}

func join(ps []piece) []byte {
	var b bytes.Buffer
	for _, p := range ps {
		if p.isBody {
			b.WriteString(p.body)
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.Bytes()
}

var tokenRE = regexp.MustCompile(regexp.QuoteMeta(testBase) + `/c/([A-Za-z0-9_-]+)`)

// checkRewritten checks out against the pieces of in, independently of
// the rewriter's own parsing: every literal piece is in out unchanged and
// in order; each body, decoded with the standard library, equals the
// original decoded body except where a link was replaced by a click URL;
// each click URL's token verifies and leads to the link it replaced (as a
// browser reads it: HTML references resolved). It returns the targets in
// order.
func checkRewritten(t *testing.T, s *Signer, ref string, ps []piece, out []byte) []string {
	t.Helper()
	var lits [][]byte
	cur := []byte{}
	for _, p := range ps {
		if p.isBody {
			lits = append(lits, cur)
			cur = []byte{}
		} else {
			cur = append(cur, p.lit...)
		}
	}
	lits = append(lits, cur)
	m, ok := gaps(out, lits)
	if !ok {
		t.Fatalf("the bytes outside the text bodies changed:\n%s", out)
	}
	var targets []string
	k := 0
	for _, p := range ps {
		if !p.isBody {
			continue
		}
		rawOut := m[k]
		k++
		orig, got := decodeStd(t, p.cte, []byte(p.body)), decodeStd(t, p.cte, rawOut)
		if !tokenRE.Match(got) {
			if string(rawOut) != p.body {
				t.Fatalf("body without click links was re-encoded:\n%q\n%q", p.body, rawOut)
			}
			continue
		}
		checkLineLengths(t, p.cte, rawOut)
		// The decoded output, split at the click URLs, must be the
		// decoded original with one link in each gap.
		var locs [][]int
		for _, l := range tokenRE.FindAllSubmatchIndex(got, -1) {
			if !bytes.Contains(orig, got[l[0]:l[1]]) { // not one that was there before
				locs = append(locs, l)
			}
		}
		var chunks [][]byte
		prev := 0
		for _, l := range locs {
			chunks = append(chunks, got[prev:l[0]])
			prev = l[1]
		}
		chunks = append(chunks, got[prev:])
		gm, ok := gaps(orig, chunks)
		if !ok {
			t.Fatalf("text outside the links changed:\noriginal: %q\nrewritten: %q", orig, got)
		}
		for i, l := range locs {
			u, r, _, err := s.Verify(string(got[l[2]:l[3]]))
			if err != nil {
				t.Fatalf("token %d does not verify: %v", i, err)
			}
			if r != ref {
				t.Fatalf("token %d: message ref %q, want %q", i, r, ref)
			}
			was := string(gm[i])
			if p.html {
				was = html.UnescapeString(was)
			}
			if u != was {
				t.Fatalf("token %d leads to %q, but replaced %q", i, u, was)
			}
			targets = append(targets, u)
		}
	}
	return targets
}

// gaps matches s against chunks with a non-empty gap between each two:
// s starts with the first chunk and ends with the last, and the chunks in
// between are found leftmost. It returns the gaps.
func gaps(s []byte, chunks [][]byte) ([][]byte, bool) {
	if !bytes.HasPrefix(s, chunks[0]) {
		return nil, false
	}
	pos := len(chunks[0])
	var out [][]byte
	for i := 1; i < len(chunks); i++ {
		c := chunks[i]
		var at int
		if i == len(chunks)-1 {
			at = len(s) - len(c)
			if at <= pos || !bytes.Equal(s[at:], c) {
				return nil, false
			}
		} else {
			if pos+1 > len(s) {
				return nil, false
			}
			k := bytes.Index(s[pos+1:], c)
			if k < 0 {
				return nil, false
			}
			at = pos + 1 + k
		}
		out = append(out, s[pos:at])
		pos = at + len(c)
	}
	return out, true
}

func decodeStd(t *testing.T, cte string, raw []byte) []byte {
	t.Helper()
	switch cte {
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("quoted-printable: %v\n%q", err, raw)
		}
		return b
	case "base64":
		b, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(raw)))
		if err != nil {
			t.Fatalf("base64: %v", err)
		}
		return b
	}
	return raw
}

func checkLineLengths(t *testing.T, cte string, raw []byte) {
	t.Helper()
	limit := 998
	if cte == "quoted-printable" || cte == "base64" {
		limit = 76
	}
	for i, l := range strings.Split(string(raw), "\n") {
		if n := len(strings.TrimSuffix(l, "\r")); n > limit {
			t.Fatalf("%s line %d has %d characters (limit %d)", cte, i+1, n, limit)
		}
	}
}

// parseAll reads a message with go-message the way a mail client would
// and returns each leaf's content type and decoded body, attached
// messages included.
func parseAll(r io.Reader, depth int) ([]string, error) {
	if depth > 30 {
		return nil, errors.New("too deep")
	}
	e, err := message.Read(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, err
	}
	return parseEntity(e, depth)
}

func parseEntity(e *message.Entity, depth int) ([]string, error) {
	t, _, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		var out []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return out, nil
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return nil, err
			}
			sub, err := parseEntity(p, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	if t == "message/rfc822" {
		return parseAll(e.Body, depth+1)
	}
	b, err := io.ReadAll(e.Body)
	if err != nil {
		return nil, err
	}
	return []string{t + "\n" + string(b)}, nil
}
