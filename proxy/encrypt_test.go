package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/spool"
)

// fakeGateway stands in for package encryption, whose own tests drive gpg
// and openssl: here only the proxy's grouping of recipients is under test.
// "Encryption" upper-cases the body and names the recipients.
type fakeGateway struct {
	outcomes map[string]string // rcpt → outcome; missing: found/openpgp
	methods  map[string]string
}

func (f fakeGateway) Lookup(_ context.Context, rcpts []string) []KeyLookup {
	var out []KeyLookup
	for _, r := range rcpts {
		l := KeyLookup{Rcpt: r, Outcome: KeyFound, Method: "openpgp"}
		if o, ok := f.outcomes[r]; ok {
			l.Outcome, l.Method, l.Err = o, "", errors.New("no key: "+o)
		}
		if m, ok := f.methods[r]; ok {
			l.Method = m
		}
		out = append(out, l)
	}
	return out
}

func (f fakeGateway) Encrypt(keys []KeyLookup, src io.Reader, dst io.Writer) error {
	b, _ := io.ReadAll(src)
	var names []string
	for _, k := range keys {
		if k.Outcome != KeyFound {
			return errors.New("asked to encrypt without a key")
		}
		names = append(names, k.Rcpt)
	}
	_, err := io.WriteString(dst, "Content-Type: encrypted/"+keys[0].Method+"\r\nX-For: "+strings.Join(names, ",")+"\r\n\r\n"+strings.ToUpper(string(b)))
	return err
}

func (f fakeGateway) Decrypt(rcpts []string, src io.Reader, dst io.Writer) (Decrypted, error) {
	b, _ := io.ReadAll(src)
	if !bytes.HasPrefix(b, []byte("Content-Type: encrypted/")) {
		return Decrypted{}, nil
	}
	if !slices.Contains(rcpts, "local@example.test") {
		return Decrypted{}, nil
	}
	if bytes.Contains(b, []byte("BROKEN")) {
		return Decrypted{Applicable: true, Note: "no-matching-key"}, nil
	}
	_, err := io.WriteString(dst, "Subject: plain\r\n\r\n"+strings.ToLower(string(b[bytes.Index(b, []byte("\r\n\r\n"))+4:])))
	return Decrypted{Applicable: true, Decrypted: true}, err
}

type memQuarantine struct {
	mu    sync.Mutex
	items []QuarantineItem
}

// Quarantine keeps a copy of the content: like the real store, it must
// not hold on to the proxy's spool after returning.
func (q *memQuarantine) Quarantine(_ context.Context, it QuarantineItem) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, err := io.ReadAll(it.Tx.Message.Open())
	if err != nil {
		return "", err
	}
	tx := *it.Tx
	tx.Message = spool.FromBytes(b)
	it.Tx = &tx
	q.items = append(q.items, it)
	return "Q1", nil
}

func TestEncryptPerRecipient(t *testing.T) {
	in := "Subject: [secure] hi\r\n\r\nsecret body\r\n"
	cases := []struct {
		name      string
		rcpts     []string
		encrypt   []string
		gw        fakeGateway
		acts      EncryptionActions
		code      int
		copies    map[string][]string // first line of each delivered copy → its recipients
		qRcpts    []string
		replyHint string
	}{
		{name: "all found: one encrypted copy", rcpts: []string{"a@p.example", "b@p.example"}, encrypt: []string{"a@p.example", "b@p.example"},
			code: 250, copies: map[string][]string{"Content-Type: encrypted/openpgp": {"a@p.example", "b@p.example"}}},
		{name: "unselected recipient gets the plain copy", rcpts: []string{"a@p.example", "c@local.example"}, encrypt: []string{"a@p.example"},
			code: 250, copies: map[string][]string{"Content-Type: encrypted/openpgp": {"a@p.example"}, "Subject: hi": {"c@local.example"}}},
		{name: "one copy per method", rcpts: []string{"a@p.example", "s@p.example"}, encrypt: []string{"a@p.example", "s@p.example"},
			gw:   fakeGateway{methods: map[string]string{"s@p.example": "smime"}},
			code: 250, copies: map[string][]string{"Content-Type: encrypted/openpgp": {"a@p.example"}, "Content-Type: encrypted/smime": {"s@p.example"}}},
		{name: "key service down: that copy quarantined, the rest delivered", rcpts: []string{"a@p.example", "d@down.example"}, encrypt: []string{"a@p.example", "d@down.example"},
			gw: fakeGateway{outcomes: map[string]string{"d@down.example": KeyUnavailable}}, acts: EncryptionActions{KeyServiceUnavailable: "quarantine", KeyAbsent: "quarantine"},
			code: 250, copies: map[string][]string{"Content-Type: encrypted/openpgp": {"a@p.example"}}, qRcpts: []string{"d@down.example"}, replyHint: "quarantined as Q1"},
		{name: "only copy quarantined", rcpts: []string{"d@down.example"}, encrypt: []string{"d@down.example"},
			gw: fakeGateway{outcomes: map[string]string{"d@down.example": KeyUnavailable}}, acts: EncryptionActions{KeyServiceUnavailable: "quarantine"},
			code: 250, qRcpts: []string{"d@down.example"}, replyHint: "quarantined as Q1"},
		{name: "tempfail answers for the whole message first", rcpts: []string{"a@p.example", "d@down.example"}, encrypt: []string{"a@p.example", "d@down.example"},
			gw: fakeGateway{outcomes: map[string]string{"d@down.example": KeyUnavailable}}, acts: EncryptionActions{KeyServiceUnavailable: "tempfail"},
			code: 451, replyHint: "d@down.example"},
		{name: "absent key rejected naming the recipient", rcpts: []string{"a@p.example", "n@nokey.example"}, encrypt: []string{"a@p.example", "n@nokey.example"},
			gw: fakeGateway{outcomes: map[string]string{"n@nokey.example": KeyAbsent}}, acts: EncryptionActions{KeyAbsent: "reject", KeyServiceUnavailable: "quarantine"},
			code: 550, replyHint: "n@nokey.example"},
		{name: "deliver_unencrypted only when configured", rcpts: []string{"d@down.example"}, encrypt: []string{"d@down.example"},
			gw: fakeGateway{outcomes: map[string]string{"d@down.example": KeyUnavailable}}, acts: EncryptionActions{KeyServiceUnavailable: "deliver_unencrypted"},
			code: 250, copies: map[string][]string{"Subject: hi": {"d@down.example"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := startDownstream(t)
			q := &memQuarantine{}
			p := startProxy(t, ds.addr,
				withPolicy(fixedPolicy{Action: policy.Encrypt, Rule: "enc", EncryptRcpts: c.encrypt, SubjectTag: "[secure]"}),
				func(rt *Runtime) { rt.Encryption, rt.EncryptionActions, rt.Quarantine = c.gw, c.acts, q })
			_, err := sendMail(t, p.addr, "s@example.test", c.rcpts, in)
			if code := smtpCode(err); (err == nil && c.code != 250) || (err != nil && code != c.code) {
				t.Fatalf("reply %v, want %d", err, c.code)
			}
			if err != nil && !strings.Contains(err.Error(), c.replyHint) {
				t.Errorf("reply %q does not name %q", err, c.replyHint)
			}
			got := map[string][]string{}
			for _, m := range ds.messages() {
				_, rest := stripTrace(t, m.data)
				first, _, _ := strings.Cut(string(rest), "\r\n")
				got[first] = m.rcpts
				if strings.HasPrefix(first, "Content-Type: encrypted/") && (!strings.Contains(string(rest), "SECRET BODY") || strings.Contains(string(rest), "secret body")) {
					t.Errorf("encrypted copy carries plaintext: %q", rest)
				}
				if bytes.Contains(bytes.ToLower(m.data), []byte("[secure]")) {
					t.Errorf("subject tag not removed: %q", m.data)
				}
			}
			if len(got) != len(c.copies) {
				t.Fatalf("delivered %v, want %v", got, c.copies)
			}
			for first, rcpts := range c.copies {
				if !slices.Equal(got[first], rcpts) {
					t.Errorf("copy %q went to %v, want %v", first, got[first], rcpts)
				}
			}
			var qr []string
			for _, it := range q.items {
				qr = append(qr, it.Tx.Rcpts...)
				if b, _ := io.ReadAll(it.Tx.Message.Open()); !bytes.HasPrefix(b, []byte("Subject: hi\r\n")) {
					t.Errorf("quarantined copy %q still carries the subject tag", b)
				}
				if !slices.Equal(it.Verdict.EncryptRcpts, it.Tx.Rcpts) || it.Reason == "" {
					t.Errorf("quarantined copy not marked to be encrypted on release: %+v", it.Verdict)
				}
			}
			if !slices.Equal(qr, c.qRcpts) {
				t.Errorf("quarantined %v, want %v", qr, c.qRcpts)
			}
			// The copies that were delivered say where the others are.
			for _, m := range ds.messages() {
				head, _ := stripTrace(t, m.data)
				if len(c.qRcpts) > 0 && !strings.Contains(head, fmt.Sprintf("quarantined=%d:Q1", len(c.qRcpts))) {
					t.Errorf("trace header %q does not name the quarantined copy", head)
				}
			}
		})
	}
}

func TestDecryptInbound(t *testing.T) {
	cases := []struct {
		name, msg, rcpt, want, note string
	}{
		{"decrypted for a local recipient", "Content-Type: encrypted/openpgp\r\n\r\nHELLO\r\n", "local@example.test", "Subject: plain\r\n\r\nhello\r\n", "decrypted=openpgp"},
		{"not for us: as it came", "Content-Type: encrypted/openpgp\r\n\r\nHELLO\r\n", "other@example.test", "Content-Type: encrypted/openpgp\r\n\r\nHELLO\r\n", ""},
		{"not decryptable: as it came, with a note", "Content-Type: encrypted/openpgp\r\n\r\nBROKEN\r\n", "local@example.test", "Content-Type: encrypted/openpgp\r\n\r\nBROKEN\r\n", "decrypted=no:no-matching-key"},
		{"plain mail untouched", "Subject: x\r\n\r\nbody\r\n", "local@example.test", "Subject: x\r\n\r\nbody\r\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := startDownstream(t)
			p := startProxy(t, ds.addr, func(rt *Runtime) { rt.Encryption = fakeGateway{} })
			if _, err := sendMail(t, p.addr, "s@example.test", []string{c.rcpt}, c.msg); err != nil {
				t.Fatal(err)
			}
			head, rest := stripTrace(t, ds.messages()[0].data)
			if string(rest) != c.want {
				t.Errorf("delivered %q, want %q", rest, c.want)
			}
			if (c.note == "") == strings.Contains(head, "decrypted=") || (c.note != "" && !strings.Contains(head, c.note)) {
				t.Errorf("trace header %q, want note %q", head, c.note)
			}
		})
	}
}
