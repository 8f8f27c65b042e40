package config

import "github.com/foxproxy/foxproxy/pgstore"

// Database is the database section: where the quarantine and held mail
// live when several foxproxy hosts share them (package pgstore). Unset
// url: the quarantine stays in quarantine.dir on this host.
type Database struct {
	URL          string   `yaml:"url"`
	PasswordFile string   `yaml:"password_file"`
	Timeout      Duration `yaml:"timeout"`
	ClaimLease   Duration `yaml:"claim_lease"`
	LogRetention Duration `yaml:"log_retention"`
}

// Store is the section as package pgstore takes it.
func (d Database) Store() pgstore.Config {
	return pgstore.Config{URL: d.URL, PasswordFile: d.PasswordFile, Timeout: d.Timeout.D(),
		ClaimLease: d.ClaimLease.D(), LogRetention: d.LogRetention.D()}
}

func (c *Config) validateDatabase(add func(key, format string, args ...any)) {
	c.Database.Store().Validate(func(key, format string, args ...any) { add("database."+key, format, args...) })
}
