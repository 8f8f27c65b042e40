package encryption

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/zap"
)

// Outcome is what a key lookup found out about one recipient.
type Outcome string

// Lookup outcomes; see the package documentation.
const (
	Found       Outcome = "found"
	Absent      Outcome = "absent"
	Unavailable Outcome = "unavailable"
)

// Methods and sources named in a Recipient.
const (
	MethodOpenPGP = "openpgp"
	MethodSMIME   = "smime"

	SourceKeyring = "keyring"
	SourceCertDir = "certdir"
	SourceWKD     = "wkd"
)

// Recipient is one recipient's lookup result. Only a Recipient from Lookup
// carries the key that Encrypt needs.
type Recipient struct {
	Addr    string
	Outcome Outcome
	Method  string // MethodOpenPGP or MethodSMIME when found
	Source  string // SourceKeyring, SourceCertDir or SourceWKD when found or decided there
	Err     error  // why absent or unavailable; never holds key material

	pgp  *openpgp.Entity
	cert *x509.Certificate
}

// Gateway finds keys, encrypts and decrypts. It is safe for concurrent use.
type Gateway struct {
	cfg     Config
	log     *zap.Logger
	keyring *keyDir // recipients' public keys; nil when not configured
	certs   *certDir
	secrets *keyDir // local recipients' private keys
	wkd     *wkdClient
	now     func() time.Time // tests move the clock for the WKD cache
}

// New builds a gateway from cfg. It reads the key directories once, and
// fails if one is unreadable or a private key file is readable by group or
// others: a misconfigured key store must stop the start, not be found out
// by the first message. Later changes are picked up by Lookup and Decrypt.
func New(cfg Config, log *zap.Logger) (*Gateway, error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("encryption")
	g := &Gateway{cfg: cfg, log: log, now: time.Now}
	if cfg.OpenPGP.KeyringDir != "" {
		g.keyring = &keyDir{dir: cfg.OpenPGP.KeyringDir, log: log}
		if err := g.initDir("encryption.openpgp.keyring_dir", g.keyring.refresh); err != nil {
			return nil, err
		}
	}
	if cfg.SMIME.CertDir != "" {
		g.certs = &certDir{dir: cfg.SMIME.CertDir, log: log}
		if err := g.initDir("encryption.smime.cert_dir", func(time.Time) ([]error, error) { return g.certs.refresh() }); err != nil {
			return nil, err
		}
	}
	if cfg.Decrypt.KeyDir != "" {
		g.secrets = &keyDir{dir: cfg.Decrypt.KeyDir, secret: true, log: log}
		problems, err := g.secrets.refresh(g.now())
		if err != nil {
			return nil, fmt.Errorf("encryption.decrypt.key_dir: %w", err)
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("encryption.decrypt.key_dir: %w", errors.Join(problems...))
		}
	}
	if cfg.OpenPGP.WKD {
		timeout := cfg.OpenPGP.Timeout.D()
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		w, err := newWKDClient(timeout, cfg.OpenPGP.CAFile, cfg.OpenPGP.Resolve, cfg.OpenPGP.CacheSize, func() time.Time { return g.now() }, log)
		if err != nil {
			return nil, err
		}
		g.wkd = w
	}
	if cfg.OnKeyServiceUnavailable == "deliver_unencrypted" {
		log.Warn("encryption.on_key_service_unavailable is deliver_unencrypted: mail selected for encryption goes out in plaintext whenever the key service is down")
	}
	return g, nil
}

// initDir reads a public key or cert directory at start: the directory
// must be readable; a bad file in it is logged and left out, as it would be
// on a later reload.
func (g *Gateway) initDir(key string, refresh func(time.Time) ([]error, error)) error {
	problems, err := refresh(g.now())
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	for _, p := range problems {
		g.log.Warn("key file left out", zap.String("setting", key), zap.Error(p))
	}
	return nil
}

// Close releases the WKD client's idle connections.
func (g *Gateway) Close() {
	if g.wkd != nil {
		g.wkd.close()
	}
}

// reload picks up changed key directories; a directory that became
// unreadable keeps what was loaded before.
func (g *Gateway) reload(now time.Time) {
	report := func(setting string, problems []error, err error) {
		if err != nil {
			g.log.Error("cannot read key directory; keeping the keys loaded before", zap.String("setting", setting), zap.Error(err))
		}
		for _, p := range problems {
			g.log.Warn("key file left out", zap.String("setting", setting), zap.Error(p))
		}
	}
	if g.keyring != nil {
		p, err := g.keyring.refresh(now)
		report("encryption.openpgp.keyring_dir", p, err)
	}
	if g.certs != nil {
		p, err := g.certs.refresh()
		report("encryption.smime.cert_dir", p, err)
	}
	if g.secrets != nil {
		p, err := g.secrets.refresh(now)
		report("encryption.decrypt.key_dir", p, err)
	}
}

// Lookup finds each recipient's key: local sources in the preferred order
// (keyring and cert dir), then WKD if enabled. WKD lookups run concurrently
// and all of them together take at most encryption.openpgp.timeout, and
// never longer than ctx allows. The result has one entry per rcpts entry,
// in the same order.
func (g *Gateway) Lookup(ctx context.Context, rcpts []string) []Recipient {
	now := g.now()
	g.reload(now)
	out := make([]Recipient, len(rcpts))
	var pending []int
	for i, a := range rcpts {
		out[i] = g.lookupLocal(a, now)
		if out[i].Outcome == "" {
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return out
	}
	if g.wkd == nil {
		for _, i := range pending {
			out[i].Outcome = Absent
			out[i].Err = fmt.Errorf("no key for %s in the local key stores (WKD is off)", rcpts[i])
		}
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, g.wkd.timeout)
	defer cancel()
	// One request per distinct address; at most maxConcurrency at once.
	byAddr := map[string][]int{}
	for _, i := range pending {
		k := strings.ToLower(rcpts[i])
		byAddr[k] = append(byAddr[k], i)
	}
	sem := make(chan struct{}, maxConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, idx := range byAddr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := rcpts[idx[0]]
			var r wkdResult
			select {
			case sem <- struct{}{}:
				r = g.wkd.lookup(ctx, addr, now)
				<-sem
			case <-ctx.Done():
				r = wkdResult{outcome: Unavailable, err: fmt.Errorf("wkd: no answer within %v: %w", g.wkd.timeout, ctx.Err())}
			}
			g.log.Debug("wkd lookup", zap.String("rcpt", addr), zap.String("outcome", string(r.outcome)), zap.String("method", r.method), zap.Error(r.err))
			mu.Lock()
			defer mu.Unlock()
			for _, i := range idx {
				out[i].Outcome, out[i].Err, out[i].Source = r.outcome, r.err, SourceWKD
				if r.outcome == Found {
					out[i].Method, out[i].pgp, out[i].Err = MethodOpenPGP, r.entity, nil
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// lookupLocal tries the keyring and the cert dir in the preferred order. An
// empty Outcome means neither has anything for addr; a key or certificate
// that exists but cannot be used makes the recipient absent unless another
// source (or WKD) has a usable one.
func (g *Gateway) lookupLocal(addr string, now time.Time) Recipient {
	r := Recipient{Addr: addr}
	var why error
	var whySource string
	fromKeyring := func() bool {
		if g.keyring == nil {
			return false
		}
		ents := g.keyring.get(addr)
		if len(ents) == 0 {
			return false
		}
		e, err := usable(ents, now)
		if err != nil {
			if why == nil {
				why, whySource = fmt.Errorf("keyring: %s: %w", addr, err), SourceKeyring
			}
			return false
		}
		r.Outcome, r.Method, r.Source, r.pgp = Found, MethodOpenPGP, SourceKeyring, e
		return true
	}
	fromCerts := func() bool {
		if g.certs == nil {
			return false
		}
		cert, err := g.certs.get(addr, now)
		if err != nil {
			g.log.Info("certificate not used", zap.String("rcpt", addr), zap.Error(err))
			if why == nil {
				why, whySource = err, SourceCertDir
			}
			return false
		}
		if cert == nil {
			return false
		}
		r.Outcome, r.Method, r.Source, r.cert = Found, MethodSMIME, SourceCertDir, cert
		return true
	}
	order := []func() bool{fromKeyring, fromCerts}
	if g.cfg.Prefer == MethodSMIME {
		order = []func() bool{fromCerts, fromKeyring}
	}
	for _, f := range order {
		if f() {
			return r
		}
	}
	if why != nil && g.wkd == nil {
		r.Outcome, r.Source, r.Err = Absent, whySource, why
	}
	return r
}
