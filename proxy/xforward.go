package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/foxproxy/foxproxy/delivery"
)

// Xforward is what XFORWARD intake records about the original client;
// delivery sends the same attributes on to the downstream.
type Xforward = delivery.Xforward

// xforwardAttrs is what foxproxy advertises and accepts, in Postfix's order.
var xforwardAttrs = []string{"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"}

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
		dst := next.Attr(name)
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
	if delivery.Unavailable(*v) {
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
