package main

import (
	"context"
	"fmt"
	"io"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/encryption"
	"github.com/foxproxy/foxproxy/proxy"
)

// gateway adapts package encryption to the proxy's Encryptor, so the proxy
// does not depend on how keys are found.
type gateway struct{ g *encryption.Gateway }

func (a gateway) Lookup(ctx context.Context, rcpts []string) []proxy.KeyLookup {
	found := a.g.Lookup(ctx, rcpts)
	out := make([]proxy.KeyLookup, len(found))
	for i, r := range found {
		out[i] = proxy.KeyLookup{Rcpt: r.Addr, Outcome: string(r.Outcome), Method: r.Method, Source: r.Source, Err: r.Err, Key: r}
	}
	return out
}

func (a gateway) Encrypt(keys []proxy.KeyLookup, src io.Reader, dst io.Writer) error {
	rs := make([]encryption.Recipient, len(keys))
	for i, k := range keys {
		r, ok := k.Key.(encryption.Recipient)
		if !ok {
			return fmt.Errorf("no key looked up for <%s>", k.Rcpt)
		}
		rs[i] = r
	}
	return a.g.Encrypt(rs, src, dst)
}

func (a gateway) Decrypt(rcpts []string, src io.Reader, dst io.Writer) (proxy.Decrypted, error) {
	r, err := a.g.Decrypt(rcpts, src, dst)
	return proxy.Decrypted{Applicable: r.Applicable, Decrypted: r.Decrypted, Note: r.Note}, err
}

// encryptionActions are what happens to copies that cannot be encrypted.
func encryptionActions(cfg *config.Config) proxy.EncryptionActions {
	return proxy.EncryptionActions{
		KeyServiceUnavailable: cfg.Encryption.OnKeyServiceUnavailable,
		KeyAbsent:             cfg.KeyAbsentAction(),
	}
}
