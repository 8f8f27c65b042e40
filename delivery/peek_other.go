//go:build !unix

package delivery

import "net"

// peeker cannot look into a socket here: the RSET before reuse decides.
type peeker struct{}

func newPeeker(net.Conn) *peeker { return &peeker{} }

func (*peeker) closed() bool { return false }
