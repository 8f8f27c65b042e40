package liststage

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"slices"
	"testing"

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
)

type mem []byte

func (m mem) Size() int64     { return int64(len(m)) }
func (m mem) Open() io.Reader { return bytes.NewReader(m) }

func TestStage(t *testing.T) {
	b := lists.NewBuilder()
	b.AddBytes(lists.ApprovedClients, "ac", []byte("192.0.2.0/24\n"))
	b.AddBytes(lists.BlockedClients, "bc", []byte("192.0.2.66\n2001:db8::/32\n"))
	b.AddBytes(lists.ApprovedSenders, "as", []byte("partner.example\n"))
	b.AddBytes(lists.BlockedSenders, "bs", []byte("*.spam.example\n"))
	b.AddBytes(lists.BlockedURLs, "bu", []byte("evil.example\n"))
	set, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(links.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mail := func(link string) mem {
		return mem("From: a@x.example\r\nSubject: s\r\n\r\nsee " + link + "\r\n")
	}
	cases := []struct {
		name   string
		client string
		from   string
		msg    mem
		cats   []string
	}{
		{"nothing", "198.51.100.1", "a@other.example", mail("https://fine.example/"), nil},
		{"approved client", "192.0.2.1", "", mail("https://fine.example/"), []string{"approved_clients"}},
		{"approved and blocked", "192.0.2.66", "", nil, []string{"approved_clients", "blocked_clients"}},
		{"blocked IPv6", "2001:db8::25", "", nil, []string{"blocked_clients"}},
		{"approved sender", "198.51.100.1", "Bob@Partner.Example", nil, []string{"approved_senders"}},
		{"blocked sender", "198.51.100.1", "x@mx.spam.example", nil, []string{"blocked_senders"}},
		{"blocked url", "198.51.100.1", "", mail("http://www.evil.example/pay"), []string{"blocked_urls"}},
		{"everything blocked", "192.0.2.66", "x@a.spam.example", mail("http://evil.example/"),
			[]string{"approved_clients", "blocked_clients", "blocked_senders", "blocked_urls"}},
	}
	for _, c := range cases {
		tx := &pipeline.Transaction{Client: netip.MustParseAddr(c.client), From: c.from}
		if c.msg != nil {
			tx.Message = c.msg
		}
		f := st.Inspect(lists.NewContext(context.Background(), set), tx)
		want := pipeline.Clean
		if len(c.cats) > 0 {
			want = pipeline.Listed
		}
		if f.Stage != "lists" || f.Status != want || !slices.Equal(f.Categories, c.cats) {
			t.Errorf("%s: finding %s %v (%q), want %s %v", c.name, f.Status, f.Categories, f.Detail, want, c.cats)
		}
	}
	// No lists at all (nil snapshot): clean.
	f := st.Inspect(context.Background(), &pipeline.Transaction{Client: netip.MustParseAddr("192.0.2.66")})
	if f.Status != pipeline.Clean {
		t.Errorf("nil lists: %+v", f)
	}
	if got := (&pipeline.Finding{Stage: "lists", Status: pipeline.Listed, Categories: []string{"blocked_clients"}}).Trace(); got != "lists=listed(blocked_clients)" {
		t.Errorf("trace = %q", got)
	}
}

// Before DATA the stage reports the client and sender lists and leaves the
// links alone, even when handed content.
func TestInspectEnvelope(t *testing.T) {
	b := lists.NewBuilder()
	b.AddBytes(lists.BlockedClients, "bc", []byte("192.0.2.66\n"))
	b.AddBytes(lists.BlockedSenders, "bs", []byte("*.spam.example\n"))
	b.AddBytes(lists.BlockedURLs, "bu", []byte("evil.example\n"))
	set, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(links.Config{})
	if err != nil {
		t.Fatal(err)
	}
	link := mem("Subject: s\r\n\r\nsee https://evil.example/\r\n")
	tx := &pipeline.Transaction{Client: netip.MustParseAddr("192.0.2.66"), From: "x@mx.spam.example", Message: link}
	ctx := lists.NewContext(context.Background(), set)
	if f := st.InspectEnvelope(ctx, tx); !slices.Equal(f.Categories, []string{"blocked_clients", "blocked_senders"}) {
		t.Errorf("envelope: %+v", f)
	}
	if f := st.Inspect(ctx, tx); !slices.Equal(f.Categories, []string{"blocked_clients", "blocked_senders", "blocked_urls"}) {
		t.Errorf("after DATA: %+v", f)
	}
	tx.Client, tx.From = netip.MustParseAddr("198.51.100.1"), "a@other.example"
	if f := st.InspectEnvelope(ctx, tx); f.Status != pipeline.Clean {
		t.Errorf("envelope of an unlisted message: %+v", f)
	}
}
