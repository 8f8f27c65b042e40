package clocktest

import (
	"testing"
	"time"
)

var start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestFakeRunsDueTimersInOrder: Advance runs what fell due, earliest
// first, before it returns; what is not due yet stays planned.
func TestFakeRunsDueTimersInOrder(t *testing.T) {
	c := New(start)
	var ran []string
	c.AfterFunc(2*time.Second, func() { ran = append(ran, "2s") })
	c.AfterFunc(time.Second, func() { ran = append(ran, "1s") })
	c.AfterFunc(time.Minute, func() { ran = append(ran, "1m") })
	c.Advance(2 * time.Second)
	if len(ran) != 2 || ran[0] != "1s" || ran[1] != "2s" {
		t.Errorf("after 2s ran %v, want [1s 2s]", ran)
	}
	if !c.Now().Equal(start.Add(2*time.Second)) || c.Pending() != 1 {
		t.Errorf("now %v, %d pending; want start+2s and the 1m timer", c.Now(), c.Pending())
	}
	c.Advance(time.Minute)
	if len(ran) != 3 || c.Pending() != 0 {
		t.Errorf("after 1m ran %v with %d pending", ran, c.Pending())
	}
}

// TestFakeStop: a stopped timer never runs, and stop reports whether it
// stopped it, like time.Timer.Stop.
func TestFakeStop(t *testing.T) {
	c := New(start)
	ran := false
	stop := c.AfterFunc(time.Second, func() { ran = true })
	if !stop() || c.Pending() != 0 {
		t.Fatalf("first stop did not stop the timer")
	}
	if stop() {
		t.Error("second stop reported stopping it again")
	}
	c.Advance(time.Hour)
	if ran {
		t.Error("a stopped timer ran")
	}
	fired := c.AfterFunc(0, func() {})
	c.Advance(0)
	if fired() {
		t.Error("stop after the timer ran reported stopping it")
	}
}
