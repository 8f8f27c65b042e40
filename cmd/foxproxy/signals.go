package main

import (
	"os"
	"os/signal"
	"syscall"
)

// daemonSignals are the signals the daemon acts on. Go's default for
// SIGHUP, SIGTERM and SIGINT is to die of them, so they are caught first
// thing in main, before the configuration is read and the listeners open:
// until the daemon serves they wait here (a stop is checked at each step
// of the start-up). SIGHUP and the stop signals have channels of their own
// so that a burst of SIGHUPs cannot crowd out a SIGTERM.
//
// Before main, while the Go runtime starts and the packages initialise (a
// few milliseconds after exec), no Go code can catch a signal: the
// kernel's default applies, as for any program before it installs its
// handlers.
type daemonSignals struct {
	// reload receives SIGHUP. Its one slot coalesces a burst into one
	// reload: re-reading the file once reads every change.
	reload chan os.Signal
	// stop receives SIGTERM and SIGINT; one is enough to stop.
	stop chan os.Signal
}

// catchDaemonSignals starts catching the daemon's signals.
func catchDaemonSignals() *daemonSignals {
	s := &daemonSignals{reload: make(chan os.Signal, 1), stop: make(chan os.Signal, 1)}
	signal.Notify(s.reload, syscall.SIGHUP)
	signal.Notify(s.stop, syscall.SIGTERM, syscall.SIGINT)
	return s
}

// release gives the signals back their default behaviour.
func (s *daemonSignals) release() {
	signal.Stop(s.reload)
	signal.Stop(s.stop)
}

// dropReload forgets a pending SIGHUP.
func (s *daemonSignals) dropReload() {
	select {
	case <-s.reload:
	default:
	}
}

// stopPending returns a pending SIGTERM or SIGINT, if any.
func (s *daemonSignals) stopPending() (os.Signal, bool) {
	select {
	case sig := <-s.stop:
		return sig, true
	default:
		return nil, false
	}
}
