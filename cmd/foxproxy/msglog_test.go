package main

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/proxy"
)

// Every field of the message log's record comes from the event: none is
// left empty when the event has it, and the ring finds the message by it.
func TestMessageLogRecordsEvents(t *testing.T) {
	ev := proxy.MessageEvent{
		Time: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), Host: "mx1.example.test", ID: "abc",
		QueueID: "4UP", DownstreamQueueID: "4DOWN", QuarantineID: "q1", MessageID: "<1@example.org>",
		Client: netip.MustParseAddr("192.0.2.7"), ClientName: "client.example.org", Helo: "helo.example.org",
		From: "s@example.org", Rcpts: 2, Recipients: []string{"a@example.test", "b@example.test"}, Size: 1234,
		Verdict: "quarantine", Rule: "virus",
		Findings:  []pipeline.Finding{{Stage: "scan", Status: pipeline.Infected, Detail: "Eicar", Reason: "virus found", Duration: time.Millisecond}},
		ReplyCode: 250, ReplyText: "2.0.0 Ok: quarantined as q1",
	}
	l := newMessageLog()
	l.Message(ev)
	p, err := l.ring.Search(msglog.Query{MessageID: "<1@example.org>", Recipient: "B@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 1 {
		t.Fatalf("ring found %d records", len(p.Records))
	}
	r := p.Records[0]
	v := reflect.ValueOf(r)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("record field %s is empty", v.Type().Field(i).Name)
		}
	}
	want := []msglog.Stage{{Stage: "scan", Status: "infected", Detail: "Eicar", Reason: "virus found", TookMS: 1}}
	if r.Sender != ev.From || r.MsgID != ev.ID || !reflect.DeepEqual(r.Stages, want) || r.ReplyText != ev.ReplyText {
		t.Fatalf("record %+v", r)
	}
}
