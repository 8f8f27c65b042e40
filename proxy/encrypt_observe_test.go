package proxy

import (
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/policy"
)

// eventLog is an Observer that keeps the message events.
type eventLog struct {
	nopObserver
	mu     sync.Mutex
	events []MessageEvent
}

func (l *eventLog) Message(ev MessageEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

// startObservedProxy is startProxy with obs installed before Serve.
func startObservedProxy(t *testing.T, downstream string, obs Observer, opts ...proxyOption) string {
	t.Helper()
	rt := &Runtime{Config: testConfig(downstream)}
	for _, o := range opts {
		o(rt)
	}
	srv := NewServer(rt, zap.NewNop())
	srv.SetObserver(obs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// The message event counts what became of each selected recipient's copy
// (foxproxy_encryption_copies_total): the exceptions an administrator
// alerts on.
func TestEncryptionCopiesObserved(t *testing.T) {
	down := fakeGateway{outcomes: map[string]string{"d@down.example": KeyUnavailable, "n@nokey.example": KeyAbsent}}
	cases := []struct {
		name    string
		rcpts   []string
		encrypt []string
		acts    EncryptionActions
		action  policy.Action
		want    map[string]int
	}{
		{"encrypted and quarantined; the unselected recipient is not counted",
			[]string{"a@p.example", "b@p.example", "d@down.example", "c@local.example"}, []string{"a@p.example", "b@p.example", "d@down.example"},
			EncryptionActions{KeyServiceUnavailable: "quarantine", KeyAbsent: "quarantine"}, policy.Encrypt,
			map[string]int{CopyEncrypted: 2, CopyQuarantined: 1}},
		{"only quarantined", []string{"d@down.example"}, []string{"d@down.example"},
			EncryptionActions{KeyServiceUnavailable: "quarantine"}, policy.Encrypt, map[string]int{CopyQuarantined: 1}},
		{"tempfail counts only the recipients that caused it", []string{"a@p.example", "d@down.example"}, []string{"a@p.example", "d@down.example"},
			EncryptionActions{KeyServiceUnavailable: "tempfail", KeyAbsent: "reject"}, policy.Encrypt, map[string]int{CopyTempfailed: 1}},
		{"reject", []string{"a@p.example", "n@nokey.example"}, []string{"a@p.example", "n@nokey.example"},
			EncryptionActions{KeyAbsent: "reject", KeyServiceUnavailable: "quarantine"}, policy.Encrypt, map[string]int{CopyRejected: 1}},
		{"deliver_unencrypted", []string{"a@p.example", "d@down.example"}, []string{"a@p.example", "d@down.example"},
			EncryptionActions{KeyServiceUnavailable: "deliver_unencrypted"}, policy.Encrypt, map[string]int{CopyEncrypted: 1, CopyUnencrypted: 1}},
		{"not an encrypt verdict", []string{"a@p.example"}, nil, EncryptionActions{}, policy.Deliver, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := startDownstream(t)
			obs := &eventLog{}
			addr := startObservedProxy(t, ds.addr, obs,
				withPolicy(fixedPolicy{Action: c.action, Rule: "enc", EncryptRcpts: c.encrypt}),
				func(rt *Runtime) { rt.Encryption, rt.EncryptionActions, rt.Quarantine = down, c.acts, &memQuarantine{} })
			sendMail(t, addr, "s@example.test", c.rcpts, "Subject: hi\r\n\r\nsecret body\r\n")
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if len(obs.events) != 1 {
				t.Fatalf("%d message events", len(obs.events))
			}
			if got := obs.events[0].EncryptionCopies; !maps.Equal(got, c.want) || (c.want == nil) != (got == nil) {
				t.Errorf("copies %v, want %v", got, c.want)
			}
		})
	}
}

// The message event carries what the message log keeps: the Message-ID,
// the client's HELO, every recipient, the reply's text and the host.
func TestMessageEventCarriesLogFields(t *testing.T) {
	ds := startDownstream(t)
	obs := &eventLog{}
	addr := startObservedProxy(t, ds.addr, obs, withPolicy(fixedPolicy{Action: policy.Deliver, Rule: "ok"}))
	body := "Subject: hi\r\nMessage-Id:\r\n <folded.1@sender.example>\r\nX-Other: x\r\n\r\nMessage-ID: <not-in-the-body@x>\r\n"
	if _, err := sendMail(t, addr, "s@example.test", []string{"a@example.test", "B@example.test"}, body); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.events) != 1 {
		t.Fatalf("%d message events", len(obs.events))
	}
	ev := obs.events[0]
	if ev.MessageID != "<folded.1@sender.example>" || ev.Helo != "client.test" || ev.Host != "foxproxy.test" ||
		!slices.Equal(ev.Recipients, []string{"a@example.test", "B@example.test"}) ||
		ev.ReplyCode != 250 || !strings.HasPrefix(ev.ReplyText, "2.0.0 ") {
		t.Fatalf("event %+v", ev)
	}
}
