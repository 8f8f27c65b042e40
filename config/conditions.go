package config

import (
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
)

// Condition is the "if" of a rule. Stage conditions (StageConditions) list
// categories or the keywords listed, clean, skipped, disabled (ers, wrs) or
// clean, infected, unavailable, skipped, error (scan); any item matching is
// enough. A stage that was skipped or disabled matches only those keywords.
type Condition struct {
	ERS      StringList    `yaml:"ers"`
	WRS      StringList    `yaml:"wrs"`
	Scan     StringList    `yaml:"scan"`
	Client   Prefixes      `yaml:"client"`
	From     StringList    `yaml:"from"`
	To       StringList    `yaml:"to"`
	Header   []HeaderMatch `yaml:"header"`
	SizeOver ByteSize      `yaml:"size_over"`
	// RcptDomain matches when any recipient's domain matches one of these
	// globs ("partner.example", "*.partner.example"). For encrypt it also
	// says which recipients' copies are encrypted.
	RcptDomain StringList `yaml:"rcpt_domain"`
	// SubjectTag matches when the Subject contains this text (case does not
	// matter), e.g. "[secure]". An encrypt rule removes it before
	// encrypting.
	SubjectTag string `yaml:"subject_tag"`
	// List matches when the message's client, sender or a link is on one
	// of these local lists: approved_clients, blocked_clients,
	// approved_senders, blocked_senders, blocked_urls.
	List StringList `yaml:"list"`
}

// StageCondition is a rule condition on one stage's finding, such as
// if: {ers: [spam]}: the key it is written under, the stage whose finding
// it tests, and the words it takes.
type StageCondition struct {
	// Key is the condition's key under a rule's "if".
	Key string
	// Stage is the stage whose finding the condition tests.
	Stage pipeline.StageName
	// Statuses are the statuses the stage reports.
	Statuses []pipeline.Status
	// Words are what the condition's items may be, in the order errors
	// list them: the stage's statuses and keywords, or, for a stage whose
	// categories are fixed, those categories.
	Words []string
	// AnyCategory: an item may also be any category name (a DNS list's
	// categories are configured, not fixed).
	AnyCategory bool
	// Of returns the condition's items in a rule's "if" (nil: none).
	Of func(*Condition) StringList
}

// StageConditions are the stages a rule can test, one condition each. It
// is the one list that validation, the policy and `foxproxy policy test
// --finding` go by: a stage the policy can test is added here (with its
// field in Condition), and nowhere else.
var StageConditions = []StageCondition{
	{Key: "ers", Stage: reputation.ERSStage, Statuses: reputation.Statuses, Words: ReputationWords, AnyCategory: true,
		Of: func(c *Condition) StringList { return c.ERS }},
	{Key: "wrs", Stage: reputation.WRSStage, Statuses: reputation.Statuses, Words: ReputationWords, AnyCategory: true,
		Of: func(c *Condition) StringList { return c.WRS }},
	{Key: "scan", Stage: scan.StageName, Statuses: scan.Statuses, Words: ScanWords,
		Of: func(c *Condition) StringList { return c.Scan }},
	{Key: "list", Stage: liststage.Name, Statuses: liststage.Statuses, Words: ListNames,
		Of: func(c *Condition) StringList { return c.List }},
}

// statusWords spells statuses as a condition's words.
func statusWords(st []pipeline.Status, more ...string) []string {
	w := make([]string, 0, len(st)+len(more))
	for _, s := range st {
		w = append(w, string(s))
	}
	return append(w, more...)
}
