package health

import (
	"encoding/json"
	"testing"
	"time"
)

// TestReportJSON: /status's field names, and which fields are left out
// when empty, are the ones the status page and `foxproxy status` read.
func TestReportJSON(t *testing.T) {
	full := Report{Kind: "ers", Name: "bl.example", State: Up, OK: true, Target: "127.0.0.1:53",
		Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), LastError: "timeout",
		NextProbe: time.Date(2026, 1, 2, 3, 5, 5, 0, time.UTC), Detail: "d", Counters: map[string]uint64{"lookups": 2}}
	b, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"ers","name":"bl.example","state":"up","ok":true,"target":"127.0.0.1:53",` +
		`"since":"2026-01-02T03:04:05Z","last_error":"timeout","next_probe":"2026-01-02T03:05:05Z",` +
		`"detail":"d","counters":{"lookups":2}}`
	if string(b) != want {
		t.Errorf("full report:\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(Report{Kind: "downstream", Name: "smtpd", State: Unknown})
	if want := `{"kind":"downstream","name":"smtpd","state":"unknown","ok":false}`; string(b) != want {
		t.Errorf("empty report:\n got %s\nwant %s", b, want)
	}
}

// TestCollect: the owners' rows, in the owners' order.
func TestCollect(t *testing.T) {
	a := Func(func() []Report { return []Report{{Kind: "a", Name: "1"}, {Kind: "a", Name: "2"}} })
	none := Func(func() []Report { return nil })
	b := Func(func() []Report { return []Report{{Kind: "b", Name: "1"}} })
	got := Collect(a, none, b)
	var names []string
	for _, r := range got {
		names = append(names, r.Kind+r.Name)
	}
	if len(names) != 3 || names[0] != "a1" || names[1] != "a2" || names[2] != "b1" {
		t.Errorf("Collect = %v, want [a1 a2 b1]", names)
	}
}
