//go:build !unix

package delivery

import "net"

// peerClosed cannot look into a socket here: the RSET before reuse decides.
func peerClosed(net.Conn) bool { return false }
