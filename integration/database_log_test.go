package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/foxproxy/foxproxy/integration/harness"
	"github.com/foxproxy/foxproxy/msglog"
)

// With database.url set, every message's row goes to the database's
// message log, where msglog.Search finds it. The database stopped: mail
// still flows (clean mail is delivered, a quarantine verdict gets 451),
// the rows that cannot be written are dropped and counted
// (foxproxy_message_log_dropped_total), and the failed custody write is
// counted (foxproxy_quarantine_failures_total). The database back: new
// rows are written again, without a restart.
func TestDatabaseMessageLogThroughOutage(t *testing.T) {
	pg := harness.StartPostgres(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, databaseConfig(pg, filepath.Join(t.TempDir(), "quarantine"))...)
	pid := fp.PID()
	pool, err := pgxpool.New(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// found waits until the message log has a row from sender with the
	// verdict; the writer is asynchronous, and a row queued while the
	// database was down may still arrive after it is back.
	found := func(sender, verdict string) msglog.Record {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			page, err := msglog.Search(context.Background(), pool, msglog.Query{Sender: sender, Verdict: verdict})
			if err == nil && len(page.Records) > 0 && (verdict != "quarantine" || page.Records[0].QuarantineID != "") {
				return page.Records[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no message log row from %s within 30s (last error: %v)", sender, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	counter := func(name string) float64 {
		t.Helper()
		_, text := httpGet(t, fp.Admin+"/metrics", "")
		v, ok := metric(text, name)
		if !ok {
			t.Fatalf("%s missing from /metrics", name)
		}
		return v
	}
	waitCounter := func(name string, atLeast float64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for counter(name) < atLeast {
			if time.Now().After(deadline) {
				t.Fatalf("%s stayed below %v for 30s", name, atLeast)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	before := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: "before@example.test", Subject: "before"})
	pf.WaitLog(t, before.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 .*queued as`, 30*time.Second)
	r := found("before@example.test", "deliver")
	if r.Verdict != "deliver" || r.Host != "foxproxy.test" || r.ReplyCode != 250 || len(r.Rcpts) != 1 {
		t.Fatalf("the row of a delivered message: %+v", r)
	}
	if v := counter("foxproxy_message_log_written_total"); v < 1 {
		t.Fatalf("foxproxy_message_log_written_total = %v after a row was written", v)
	}
	droppedBefore := counter("foxproxy_message_log_dropped_total")
	if f := counter("foxproxy_quarantine_failures_total"); f != 0 {
		t.Fatalf("foxproxy_quarantine_failures_total = %v before any failure", f)
	}

	pg.Stop()
	during := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: "during@example.test", Subject: "during"})
	pf.WaitLog(t, during.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 .*queued as`, 30*time.Second)
	waitCounter("foxproxy_message_log_dropped_total", droppedBefore+1)
	held := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: quarantineMe, Subject: "to quarantine during"})
	pf.WaitLog(t, held.QueueID+`: to=<rcpt@example\.test>.*status=deferred.*451 4\.3\.0`, 30*time.Second)
	waitCounter("foxproxy_quarantine_failures_total", 1)

	pg.Start()
	waitStatus(t, fp, "up")
	after := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: "after@example.test", Subject: "after"})
	pf.WaitLog(t, after.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 .*queued as`, 30*time.Second)
	if r := found("after@example.test", "deliver"); r.Verdict != "deliver" {
		t.Fatalf("the row after the outage: %+v", r)
	}
	// The deferred message is quarantined now, and logged as such.
	pf.Flush()
	pf.WaitLog(t, held.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as`, 30*time.Second)
	if r := found(quarantineMe, "quarantine"); r.Verdict != "quarantine" || r.QuarantineID == "" || r.ReplyCode != 250 {
		t.Fatalf("the row of the quarantined message: %+v", r)
	}
	// The row of the message during the outage was dropped, not kept.
	if page, err := msglog.Search(context.Background(), pool, msglog.Query{Sender: "during@example.test"}); err != nil || len(page.Records) != 0 {
		t.Fatalf("a row from the outage: %+v, %v", page.Records, err)
	}
	if !fp.Running() || fp.PID() != pid {
		t.Fatal("foxproxy was restarted or died during the outage")
	}
}
