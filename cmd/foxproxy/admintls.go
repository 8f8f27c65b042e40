package main

import (
	"crypto/tls"
	"sync"
)

// adminCert holds the admin listener's certificate: tls.Config asks it
// for every handshake, so a SIGHUP that loads a renewed certificate
// changes what new connections get without closing the listener.
type adminCert struct {
	mu   sync.RWMutex
	cert *tls.Certificate
}

// load reads a certificate and key; on failure the one held stays.
func (c *adminCert) load(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	return nil
}

func (c *adminCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

func (c *adminCert) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: c.get, MinVersion: tls.VersionTLS12}
}
