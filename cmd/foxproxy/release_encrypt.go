package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/encryption"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/spool"
)

// encryptForRelease encrypts a quarantined copy that waited for its
// recipients' keys (an encryption exception), now that they can be had.
// It returns nil to release the stored message as it is: only when the
// administrator said --unencrypted. A release never sends a copy meant to
// be encrypted in clear by accident.
func (q *quarantineCLI) encryptForRelease(ctx context.Context, e quarantine.Entry, msg io.Reader) (*spool.Message, error) {
	if q.unencrypted {
		fmt.Fprintf(q.stderr, "foxproxy quarantine: %s: releasing UNENCRYPTED, as asked (--unencrypted)\n", e.ID)
		return nil, nil
	}
	if !q.cfg.Encryption.Enabled() {
		return nil, fmt.Errorf("waits to be encrypted for %s but %s configures no encryption; "+
			"the entry is kept (release it with --unencrypted to send it in clear)", strings.Join(e.Rcpts, ", "), q.cfg.File)
	}
	g, err := encryption.New(q.cfg.Encryption, zap.NewNop())
	if err != nil {
		return nil, fmt.Errorf("encryption: %w", err)
	}
	defer g.Close()
	keys := g.Lookup(ctx, e.Rcpts)
	for _, k := range keys {
		if k.Outcome != encryption.Found {
			return nil, fmt.Errorf("still no encryption key for <%s> (%s: %v); the entry is kept, release it later "+
				"(or with --unencrypted to send it in clear)", k.Addr, k.Outcome, k.Err)
		}
		if k.Method != keys[0].Method {
			return nil, fmt.Errorf("its recipients need different encryption methods (%s, %s); "+
				"release it once per recipient is not supported yet: the entry is kept", keys[0].Method, k.Method)
		}
	}
	w := spool.NewWriter(spool.Options{MemoryThreshold: 1 << 20})
	if err := g.Encrypt(keys, msg, w); err != nil {
		w.Discard()
		return nil, fmt.Errorf("cannot encrypt: %w; the entry is kept", err)
	}
	return w.Finish()
}
