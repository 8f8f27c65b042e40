//go:build unix

package delivery

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether c has anything to read now, end of file
// included: on an idle SMTP connection that means the server closed it or
// is about to (421), since it has no reply owed. It peeks (MSG_PEEK) without
// waiting (MSG_DONTWAIT), so it consumes nothing and never blocks. A
// connection it cannot look into counts as closed.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false // not a socket (tests): the RSET decides
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var b [1]byte
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	})
	if err != nil {
		return true
	}
	return !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EWOULDBLOCK)
}
