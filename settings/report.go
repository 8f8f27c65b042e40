package settings

import (
	"net"
	"strconv"
)

// Report records a problem with the setting at key. Keys are paths as the
// file spells them ("rules[2].then", "openpgp.timeout"), relative to the
// section being validated; package config prefixes the section and adds
// the file's name and line.
type Report func(key, format string, args ...any)

// Under returns a Report for the section called section: its keys are
// prefixed with "section.".
func (r Report) Under(section string) Report {
	return func(key, format string, args ...any) { r(section+"."+key, format, args...) }
}

// CheckHostPort reports key unless v is host:port with a valid port; an
// empty v is reported only when required.
func CheckHostPort(report Report, key, v string, required bool) {
	if v == "" {
		if required {
			report(key, "must be set (host:port)")
		}
		return
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		report(key, "%q is not host:port", v)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		report(key, "%q has an invalid port", v)
	}
}
