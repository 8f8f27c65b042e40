package config

import "github.com/foxproxy/foxproxy/settings"

// The value types the file is written in live in package settings, below
// the packages that own a section; these names keep config's own sections
// readable.
type (
	Duration   = settings.Duration
	ByteSize   = settings.ByteSize
	Prefix     = settings.Prefix
	Prefixes   = settings.Prefixes
	StringList = settings.StringList
)
