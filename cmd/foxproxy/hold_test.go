package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/spool"
)

func heldItem(queueID string, rcpts ...string) proxy.QuarantineItem {
	return proxy.QuarantineItem{Tx: &pipeline.Transaction{QueueID: queueID, From: "a@example.test", Rcpts: rcpts,
		Message: spool.FromBytes([]byte("Subject: x\r\n\r\nbody\r\n"))}}
}

// Postfix retrying a message foxproxy held already (it died before its 250
// arrived) finds the entry by name: one held copy, one delivery later.
func TestHoldFindsRetryByName(t *testing.T) {
	store, err := quarantine.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q := quarantiner{store: store}
	arrived := time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC)
	ctx := context.Background()
	first, err := q.Hold(ctx, heldItem("4ABC", "b@example.test"), arrived)
	if err != nil {
		t.Fatal(err)
	}
	again, err := q.Hold(ctx, heldItem("4ABC", "b@example.test"), arrived)
	if err != nil || again != first {
		t.Fatalf("retry held as %s (%v), want %s", again, err, first)
	}
	other, err := q.Hold(ctx, heldItem("4ABC", "c@example.test"), arrived)
	if err != nil || other == first {
		t.Fatalf("another envelope held as %s (%v)", other, err)
	}
	held, _ := store.Held()
	if n, _, _ := held.Stats(context.Background()); n != 2 {
		t.Fatalf("%d held entries, want 2", n)
	}

	// A different message under the same derived ID (a hash collision) is
	// stored, not mistaken for a retry.
	clash := heldItem("9XYZ", "d@example.test")
	e := entryOf(clash)
	e.Arrived = arrived
	id := heldID(e)
	if err := held.PutAs(context.Background(), id, quarantine.Entry{QueueID: "OTHER", From: "z@example.test"}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	got, err := q.Hold(ctx, clash, arrived)
	if err != nil || got == id {
		t.Fatalf("colliding message held as %s (%v); the entry there is another message", got, err)
	}
	if n, _, _ := held.Stats(context.Background()); n != 4 {
		t.Fatalf("%d held entries, want 4", n)
	}
	if x, _ := held.Get(context.Background(), id); x.QueueID != "OTHER" {
		t.Fatalf("the entry under the derived ID was replaced: %+v", x)
	}
}
