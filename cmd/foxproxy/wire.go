package main

import (
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/proxy"
)

// wired is a runtime plus what must be stopped with it.
type wired struct {
	*proxy.Runtime
	closers []func()
}

// wire builds the stages, the policy and the quarantine from a
// configuration. This is the one place where stages are put in order.
func wire(cfg *config.Config, log *zap.Logger) (*wired, error) {
	w := &wired{Runtime: &proxy.Runtime{Config: cfg}}
	var stages []pipeline.Stage
	w.Pipeline = pipeline.New(stages...)
	w.Policy = policy.DeliverAll{}
	return w, nil
}

func (w *wired) stageNames() []string {
	names := []string{}
	for _, s := range w.Pipeline.Stages() {
		names = append(names, s.Name())
	}
	return names
}

func (w *wired) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
	w.closers = nil
}

// closeWhenIdle stops the runtime's background work once no session uses
// it. Sessions keep their runtime, so this waits for the sessions that were
// open at the reload; new ones already use the new runtime.
func (w *wired) closeWhenIdle(srv *proxy.Server) {
	if len(w.closers) == 0 {
		return
	}
	go func() {
		srv.WaitRuntimeIdle(w.Runtime)
		w.close()
	}()
}
