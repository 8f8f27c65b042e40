package reputation

import "time"

// Clock is the time source for cache expiry and for the ERS health state
// machine (state timestamps and re-check scheduling). Network deadlines
// always use real time. Tests inject a fake clock to drive the state machine
// without sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, from
	// whoever advances time) once d has elapsed. stop cancels the call and
	// reports whether it did so before f started, like time.Timer.Stop.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// SystemClock returns the real clock, the default everywhere a Clock is
// optional.
func SystemClock() Clock { return systemClock{} }
