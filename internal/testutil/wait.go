// Package testutil holds what the tests of many packages need and no
// package owns. It is imported by tests only.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and returns how long that took; if
// it does not hold within timeout, the test fails naming what it waited
// for. Tests wait for conditions this way, never for fixed times: the
// machines they run on are shared and their speed varies.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
