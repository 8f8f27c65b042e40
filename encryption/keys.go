package encryption

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/zap"
)

// maxKeyFile bounds what is read from one file of a key or cert directory.
const maxKeyFile = 16 << 20

// dirState is a directory's file names, sizes, modes and mtimes: when it
// changes, the directory is read again. Comparing it on each lookup costs
// one readdir and a stat per file, and needs no watcher.
func dirState(dir string) (string, []os.FileInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	var sb strings.Builder
	var infos []os.FileInfo
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") { // editors' and rsync's temporary files
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name())) // follows symlinks
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		fmt.Fprintf(&sb, "%s\x00%d\x00%o\x00%d\n", e.Name(), fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		infos = append(infos, fi)
	}
	return sb.String(), infos, nil
}

// keyDir is a directory of OpenPGP key files indexed by user ID address.
// With secret set it holds the gateway's private keys, and refuses files
// that group or others can read.
type keyDir struct {
	dir    string
	secret bool
	log    *zap.Logger

	mu     sync.Mutex
	state  string
	byAddr map[string]openpgp.EntityList
}

// refresh re-reads the directory if anything in it changed. It returns the
// problems with single files (those files are left out); the error is for
// the directory itself, and keeps the index loaded before.
func (k *keyDir) refresh(now time.Time) (problems []error, err error) {
	state, infos, err := dirState(k.dir)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if state == k.state && k.byAddr != nil {
		return nil, nil
	}
	byAddr := map[string]openpgp.EntityList{}
	for _, fi := range infos {
		name := filepath.Join(k.dir, fi.Name())
		ents, err := k.load(name, fi)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		for _, e := range ents {
			for _, a := range addresses(e, now) {
				byAddr[a] = append(byAddr[a], e)
			}
		}
	}
	k.state, k.byAddr = state, byAddr
	return problems, nil
}

func (k *keyDir) load(name string, fi os.FileInfo) (openpgp.EntityList, error) {
	if k.secret && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: private key file is accessible by group or others (mode %04o); chmod 600 it", name, fi.Mode().Perm())
	}
	if fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxKeyFile)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	ents, err := readKeys(data)
	if err != nil {
		// The parser's message names a packet problem, never key bytes.
		return nil, fmt.Errorf("%s: not an OpenPGP key file: %v", name, err)
	}
	if !k.secret {
		return ents, nil
	}
	for _, e := range ents {
		if e.PrivateKey == nil {
			return nil, fmt.Errorf("%s: holds a public key only; decrypt.key_dir needs secret keys (gpg --export-secret-keys)", name)
		}
		if e.PrivateKey.Encrypted {
			return nil, fmt.Errorf("%s: secret key is protected by a passphrase; foxproxy needs it unprotected", name)
		}
		for _, sk := range e.Subkeys {
			if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
				return nil, fmt.Errorf("%s: secret subkey is protected by a passphrase; foxproxy needs it unprotected", name)
			}
		}
	}
	return ents, nil
}

func (k *keyDir) get(addr string) openpgp.EntityList {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.byAddr[strings.ToLower(addr)]
}

// addresses returns the lowercased email addresses of e's user IDs that
// are not revoked.
func addresses(e *openpgp.Entity, now time.Time) []string {
	var out []string
	for _, id := range e.Identities {
		if id.Revoked(now) {
			continue
		}
		a := id.UserId.Email
		if a == "" && strings.Contains(id.UserId.Id, "@") && !strings.ContainsAny(id.UserId.Id, " <>") {
			a = id.UserId.Id // gpg --quick-gen-key alice@example.org: a bare address as the user ID
		}
		if a != "" {
			out = append(out, strings.ToLower(a))
		}
	}
	return out
}

func hasAddress(e *openpgp.Entity, addr string, now time.Time) bool {
	addr = strings.ToLower(addr)
	for _, a := range addresses(e, now) {
		if a == addr {
			return true
		}
	}
	return false
}

// usable returns the first entity that can encrypt now.
func usable(ents openpgp.EntityList, now time.Time) (*openpgp.Entity, error) {
	for _, e := range ents {
		if _, ok := e.EncryptionKey(now); ok {
			return e, nil
		}
	}
	return nil, errors.New("the key is expired or revoked, or has no encryption subkey")
}

// certDir is a directory of PEM S/MIME certificates indexed by address.
type certDir struct {
	dir string
	log *zap.Logger

	mu     sync.Mutex
	state  string
	byAddr map[string][]*x509.Certificate
}

var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1} // PKCS #9 emailAddress

func (c *certDir) refresh() (problems []error, err error) {
	state, infos, err := dirState(c.dir)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if state == c.state && c.byAddr != nil {
		return nil, nil
	}
	byAddr := map[string][]*x509.Certificate{}
	for _, fi := range infos {
		name := filepath.Join(c.dir, fi.Name())
		if fi.Size() > maxKeyFile {
			problems = append(problems, fmt.Errorf("%s: larger than %d bytes", name, maxKeyFile))
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		n := 0
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue // a key or CRL next to the certificate: not ours to read
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: %v", name, err))
				continue
			}
			n++
			for _, a := range certAddresses(cert) {
				byAddr[a] = append(byAddr[a], cert)
			}
		}
		if n == 0 {
			problems = append(problems, fmt.Errorf("%s: no PEM certificate in it", name))
		}
	}
	c.state, c.byAddr = state, byAddr
	return problems, nil
}

func certAddresses(cert *x509.Certificate) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		a = strings.ToLower(strings.TrimSpace(a))
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range cert.EmailAddresses {
		add(a)
	}
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(oidEmailAddress) {
			if s, ok := n.Value.(string); ok {
				add(s)
			}
		}
	}
	return out
}

// get returns the newest usable certificate for addr, or why there is none.
func (c *certDir) get(addr string, now time.Time) (*x509.Certificate, error) {
	c.mu.Lock()
	certs := append([]*x509.Certificate(nil), c.byAddr[strings.ToLower(addr)]...)
	c.mu.Unlock()
	if len(certs) == 0 {
		return nil, nil
	}
	sort.Slice(certs, func(i, j int) bool { return certs[i].NotBefore.After(certs[j].NotBefore) })
	var why error
	for _, cert := range certs {
		switch {
		case now.After(cert.NotAfter):
			why = fmt.Errorf("certificate for %s expired on %s", addr, cert.NotAfter.UTC().Format(time.DateOnly))
		case now.Before(cert.NotBefore):
			why = fmt.Errorf("certificate for %s is valid only from %s", addr, cert.NotBefore.UTC().Format(time.DateOnly))
		case !canEncrypt(cert):
			why = fmt.Errorf("certificate for %s is not usable for S/MIME encryption (needs an RSA key allowed for key encipherment and email protection)", addr)
		default:
			return cert, nil
		}
	}
	return nil, why
}

// canEncrypt: smallstep/pkcs7 encrypts to RSA keys only; key usage and
// extended key usage, when present, must allow it (RFC 8550 §4.4).
func canEncrypt(cert *x509.Certificate) bool {
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return false
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		return false
	}
	if len(cert.ExtKeyUsage) == 0 {
		return true
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}
