//go:build unix

package delivery

import (
	"errors"
	"net"
	"syscall"
)

// peeker looks into a socket for peerClosed; made once per connection,
// so that a check allocates nothing.
type peeker struct {
	rc  syscall.RawConn // nil: not a socket (tests), the RSET decides
	err error
	b   [1]byte
	fn  func(fd uintptr) bool
}

func newPeeker(c net.Conn) *peeker {
	p := &peeker{}
	if sc, ok := c.(syscall.Conn); ok {
		p.rc, p.err = sc.SyscallConn()
	}
	p.fn = func(fd uintptr) bool {
		_, _, p.err = syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	}
	return p
}

// closed reports whether the socket has anything to read now, end of file
// included: on an idle SMTP connection that means the server closed it or
// is about to (421), since it owes no reply. It peeks (MSG_PEEK) without
// waiting (MSG_DONTWAIT), so it consumes nothing and never blocks. A
// connection it cannot look into counts as closed.
func (p *peeker) closed() bool {
	if p.rc == nil {
		return p.err != nil
	}
	if err := p.rc.Read(p.fn); err != nil {
		return true
	}
	return !errors.Is(p.err, syscall.EAGAIN) && !errors.Is(p.err, syscall.EWOULDBLOCK)
}
