package settings

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
