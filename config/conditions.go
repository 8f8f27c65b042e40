package config

import (
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
)

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
