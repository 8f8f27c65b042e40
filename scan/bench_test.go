package scan

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// BenchmarkScan1MB scans the same clean 1 MB mail through the real clamd
// (zINSTREAM) and through the real c-icap (RESPMOD, virus_scan backed by
// that clamd).
//
//	go test -run '^$' -bench Scan1MB -benchmem ./scan/
func BenchmarkScan1MB(b *testing.B) {
	clamdAddr, _, icapURL := realDaemons(b)
	msg := mail(nil, 1<<20)
	clamd, _ := NewClamd(clamdAddr, Options{Timeout: time.Minute})
	icap, _ := NewICAP(icapURL, Options{Timeout: time.Minute})
	defer icap.Close()
	for _, bc := range []struct {
		name string
		sc   Scanner
	}{{"clamd-INSTREAM", clamd}, {"icap-RESPMOD", icap}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := bc.sc.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
				if err != nil || res.Infected {
					b.Fatal(res, err)
				}
			}
		})
	}
}

// BenchmarkClamdSession measures what clamd sessions (IDSESSION) save: the
// same small mail scanned with a new connection per scan and within one
// session.
//
//	go test -run '^$' -bench ClamdSession -benchmem ./scan/
func BenchmarkClamdSession(b *testing.B) {
	clamdAddr, _, _ := realDaemons(b)
	msg := mail(nil, 4<<10)
	for _, bc := range []struct {
		name    string
		maxIdle int
	}{{"connection-per-scan", -1}, {"session", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			c, _ := NewClamd(clamdAddr, Options{MaxIdle: bc.maxIdle})
			defer c.Close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
