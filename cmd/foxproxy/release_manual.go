package main

import (
	"context"
	"io"
	"strings"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/release"
)

// releaseByHand releases one entry of q.store for a person: `foxproxy
// quarantine release` and the web console. It claims the entry (force
// takes over a claim left behind), removes X-Foxproxy fields that came
// with the message, encrypts a copy that waits for keys, puts this host's
// X-Foxproxy-Released field (naming who, by) on top, and hands the rest to
// release.Release: delivery through this host's downstream, then the
// record. The errors are release.Release's, and *quarantine.ClaimedError
// when another release holds the entry; the caller words them.
func (q *quarantineCLI) releaseByHand(ctx context.Context, id string, force bool, by []string) (quarantine.Entry, *release.Result, error) {
	e, err := q.store.Get(ctx, id)
	if err != nil {
		return e, nil, err
	}
	claim, err := q.store.Claim(ctx, id, force)
	if err != nil {
		return e, nil, err
	}
	msg, err := q.store.Open(ctx, id)
	if err != nil {
		claim.Drop()
		return e, nil, err
	}
	defer msg.Close()

	cfg := q.cfg
	var content io.Reader = msg
	if cfg.RemoveIncomingTrace {
		// Only this foxproxy's X-Foxproxy-Released goes on top; fields
		// that came with the message were not written here.
		content, _ = delivery.RemoveIncomingTrace(msg, int64(cfg.Limits.MaxHeaderBytes))
	}
	size := e.Size
	if len(e.Encrypt) > 0 {
		enc, err := q.encryptForRelease(ctx, e, content)
		if err != nil {
			claim.Drop()
			return e, nil, err
		}
		if enc != nil {
			defer enc.Close()
			content, size = enc.Open(), enc.Size()
		}
	}
	host := cfg.Proxy().HostnameOrDefault()
	header := releasedHeader(host, e, by, q.now())
	res, err := release.Release(ctx, release.Request{
		Store: q.store, Claim: claim, Entry: e, Now: q.now,
		Options: delivery.ReinjectOptions{
			Addr:           cfg.Downstream,
			Hostname:       host,
			ConnectTimeout: cfg.Timeouts.DownstreamConnect.D(),
			CommandTimeout: cfg.Timeouts.DownstreamCommand.D(),
			DataTimeout:    cfg.Timeouts.DownstreamData.D(),
		},
		Size: size + int64(len(header)),
		Send: func(ctx context.Context, o delivery.ReinjectOptions, env delivery.Envelope) (*delivery.Reinjected, error) {
			return delivery.Reinject(ctx, o, env, io.MultiReader(strings.NewReader(header), content))
		},
	})
	return e, res, err
}
