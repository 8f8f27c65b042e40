package testutil

import (
	"net"
	"testing"
)

// ServeTCP listens on a free loopback port until the test ends and runs
// handle for every connection, in a goroutine of its own, closing the
// connection after it. It returns the address: a fake peer for protocol
// edge cases that a real daemon cannot be made to produce.
func ServeTCP(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}
