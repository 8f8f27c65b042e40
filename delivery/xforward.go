package delivery

import (
	"fmt"
	"net/netip"
	"strings"
)

// Xforward holds the attributes of Postfix's XFORWARD extension
// (XFORWARD_README): what the upstream Postfix knows about the client that
// really sent the message. Values are decoded; "" means not sent.
// "[UNAVAILABLE]" and "[TEMPUNAVAIL]" are kept as sent: they mean unknown.
type Xforward struct {
	Name   string // client's verified reverse name
	Addr   string // client's IP address (without the "IPV6:" prefix)
	Port   string // client's TCP port
	Proto  string // SMTP or ESMTP
	Helo   string // client's HELO/EHLO argument
	Ident  string // the upstream's queue ID
	Source string // LOCAL or REMOTE
}

// Attr returns the field that holds the attribute name (upper case, as
// XFORWARD spells it), or nil for a name XFORWARD does not define.
func (x *Xforward) Attr(name string) *string {
	switch name {
	case "NAME":
		return &x.Name
	case "ADDR":
		return &x.Addr
	case "PORT":
		return &x.Port
	case "PROTO":
		return &x.Proto
	case "HELO":
		return &x.Helo
	case "IDENT":
		return &x.Ident
	case "SOURCE":
		return &x.Source
	}
	return nil
}

// xforwardNames are the attributes in Postfix's order.
var xforwardNames = []string{"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"}

// Map is x as the quarantine records it: attribute name to value, every
// attribute present.
func (x Xforward) Map() map[string]string {
	m := make(map[string]string, len(xforwardNames))
	for _, n := range xforwardNames {
		m[n] = *x.Attr(n)
	}
	return m
}

// XforwardFromMap is the inverse of Map; unknown names are ignored.
func XforwardFromMap(m map[string]string) Xforward {
	var x Xforward
	for _, n := range xforwardNames {
		*x.Attr(n) = m[n]
	}
	return x
}

// IsZero reports whether no attribute was sent.
func (x Xforward) IsZero() bool { return x == Xforward{} }

// Unavailable reports whether v is one of XFORWARD's "unknown" values.
func Unavailable(v string) bool {
	return strings.EqualFold(v, "[UNAVAILABLE]") || strings.EqualFold(v, "[TEMPUNAVAIL]")
}

// ClientAddr returns the forwarded client address, if one was sent and is
// known.
func (x Xforward) ClientAddr() (netip.Addr, bool) {
	if x.Addr == "" || Unavailable(x.Addr) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(x.Addr)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// encodeXtext encodes s as RFC 3461 xtext.
func encodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// XforwardCommands renders x for a downstream that announced the given
// attributes, split in two commands the way Postfix's smtp client does so
// each stays far below any line limit. Attributes the downstream does not
// support, and empty ones, are left out.
func XforwardCommands(x Xforward, supported map[string]bool) []string {
	groups := [][]string{{"NAME", "ADDR", "PORT"}, {"PROTO", "HELO", "IDENT", "SOURCE"}}
	var cmds []string
	for _, g := range groups {
		var b strings.Builder
		for _, name := range g {
			v := *x.Attr(name)
			if v == "" || !supported[name] {
				continue
			}
			if name == "ADDR" && !Unavailable(v) {
				if a, err := netip.ParseAddr(v); err == nil && a.Is6() && !a.Is4In6() {
					v = "IPV6:" + v
				}
			}
			if b.Len() == 0 {
				b.WriteString("XFORWARD")
			}
			b.WriteString(" " + name + "=" + encodeXtext(v))
		}
		if b.Len() > 0 {
			cmds = append(cmds, b.String())
		}
	}
	return cmds
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
