// Package clock is the time source of foxproxy's health state machines
// (ERS zones, WRS breakers, the scan stage's failover) and of its caches'
// expiry. Network deadlines always use real time. Production code uses
// System; tests inject clocktest.Fake to drive the state machines without
// sleeping.
package clock

import "time"

// Clock tells the time and runs functions later.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, from
	// whoever advances time) once d has elapsed. stop cancels the call and
	// reports whether it did so before f started, like time.Timer.Stop.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// system is the real clock.
type system struct{}

func (system) Now() time.Time { return time.Now() }

func (system) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// System returns the real clock, the default everywhere a Clock is
// optional.
func System() Clock { return system{} }
