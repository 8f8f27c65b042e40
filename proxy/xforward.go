package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
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

// xforwardAttrs is what foxproxy advertises and accepts, in Postfix's order.
var xforwardAttrs = []string{"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"}

func (x *Xforward) field(name string) *string {
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

// IsZero reports whether no attribute was sent.
func (x Xforward) IsZero() bool { return x == Xforward{} }

// unavailable reports whether v is one of XFORWARD's "unknown" values.
func unavailable(v string) bool {
	return strings.EqualFold(v, "[UNAVAILABLE]") || strings.EqualFold(v, "[TEMPUNAVAIL]")
}

// ClientAddr returns the forwarded client address, if one was sent and is
// known.
func (x Xforward) ClientAddr() (netip.Addr, bool) {
	if x.Addr == "" || unavailable(x.Addr) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(x.Addr)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// errXforwardSyntax and friends are turned into 501 replies; their text is
// safe to show the client (it only echoes what the client sent, bounded).
var (
	errXforwardEmpty = errors.New("Syntax: XFORWARD attribute=value...")
)

// parseXforward applies the attributes of one XFORWARD command's argument
// to x. It validates everything before changing anything, so a bad command
// leaves the earlier attributes intact (like Postfix).
func parseXforward(arg string, maxValue int, x *Xforward) error {
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		return errXforwardEmpty
	}
	next := *x
	for _, f := range fields {
		name, raw, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return fmt.Errorf("Syntax: XFORWARD attribute=value... (bad item %q)", truncate(f, 40))
		}
		name = strings.ToUpper(name)
		dst := next.field(name)
		if dst == nil {
			return fmt.Errorf("Bad XFORWARD attribute name: %s", truncate(name, 20))
		}
		v, err := decodeXtext(raw)
		if err != nil {
			return fmt.Errorf("Bad XFORWARD %s value: %v", name, err)
		}
		if len(v) > maxValue {
			return fmt.Errorf("Bad XFORWARD %s value: longer than %d bytes", name, maxValue)
		}
		if err := checkXforwardValue(name, &v); err != nil {
			return fmt.Errorf("Bad XFORWARD %s value: %v", name, err)
		}
		*dst = v
	}
	*x = next
	return nil
}

func checkXforwardValue(name string, v *string) error {
	if unavailable(*v) {
		return nil
	}
	for i := 0; i < len(*v); i++ {
		if c := (*v)[i]; c < 0x20 || c == 0x7f {
			return errors.New("control character")
		}
	}
	switch name {
	case "ADDR":
		a := *v
		if len(a) > 5 && strings.EqualFold(a[:5], "IPV6:") {
			a = a[5:]
		}
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("%q is not an IP address", truncate(*v, 60))
		}
		*v = a
	case "PORT":
		if n, err := strconv.Atoi(*v); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%q is not a port number", truncate(*v, 20))
		}
	}
	return nil
}

// decodeXtext decodes RFC 3461 §4 xtext ("+" followed by two upper-case hex
// digits encodes a byte).
func decodeXtext(s string) (string, error) {
	if !strings.ContainsAny(s, "+=") {
		for i := 0; i < len(s); i++ {
			if s[i] < '!' || s[i] > '~' {
				return "", errors.New("invalid xtext character")
			}
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
				return "", errors.New("invalid xtext hexchar")
			}
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
		case c == '=' || c < '!' || c > '~':
			return "", errors.New("invalid xtext character")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isUpperHex(c byte) bool { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') }

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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// xforwardCommands renders x for a downstream that announced the given
// attributes, split in two commands the way Postfix's smtp client does so
// each stays far below any line limit. Attributes the downstream does not
// support, and empty ones, are left out.
func xforwardCommands(x Xforward, supported map[string]bool) []string {
	groups := [][]string{{"NAME", "ADDR", "PORT"}, {"PROTO", "HELO", "IDENT", "SOURCE"}}
	var cmds []string
	for _, g := range groups {
		var b strings.Builder
		for _, name := range g {
			v := *x.field(name)
			if v == "" || !supported[name] {
				continue
			}
			if name == "ADDR" && !unavailable(v) {
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
