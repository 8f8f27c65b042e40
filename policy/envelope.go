package policy

import (
	"strings"

	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
)

// Deciding before DATA.
//
// A before-queue foxproxy talks to the sending client in real time, so a
// message whose verdict follows from its envelope alone (the client's
// reputation, the local lists of clients and senders, the sender) can be
// refused at RCPT, before its body is sent, as the appliance's sender
// filter did. The rules are still one ordered list, first match wins; a
// verdict taken before DATA must therefore be the verdict the same rules
// would give after DATA. DecideBeforeData evaluates the rules in order over
// what is known before DATA, each condition being true, false or not yet
// known:
//
//   - a rule with a false condition cannot match whatever the content is:
//     it is passed over, as after DATA;
//   - a rule whose conditions are all true matches: its verdict is the
//     message's verdict, since no earlier rule could have matched;
//   - a rule with a condition not yet known (wrs, scan, header,
//     subject_tag, size_over, a blocked_urls list, the recipients) could
//     match after DATA, and whatever it decides would come first: nothing
//     is decided before DATA. So an earlier content rule with action
//     deliver is never overtaken by a later envelope rule that rejects, and
//     a rule that mixes envelope and content conditions is decided after
//     DATA unless its envelope part already fails.
//
// An ERS finding is known only when the lookup answered (clean or listed):
// a lookup that was skipped (its budget ended, the list failed) or disabled
// decides nothing before DATA, and the message goes on to DATA, where ERS
// looks again, as it always did.

// EnvelopeDecider is a Decider that can also decide before DATA.
type EnvelopeDecider interface {
	Decider
	// DecideBeforeData returns the verdict the rules give on what is known
	// before DATA: tx without Message, Rcpts not final, and the findings of
	// the stages that look at the envelope only. decided is false when a
	// rule that needs more could decide first.
	DecideBeforeData(tx *pipeline.Transaction, findings []pipeline.Finding) (v Verdict, decided bool)
}

var _ EnvelopeDecider = (*Engine)(nil)

// tri is a condition's value before DATA.
type tri int8

const (
	no tri = iota
	yes
	unknown
)

func known(b bool) tri {
	if b {
		return yes
	}
	return no
}

// DecideBeforeData implements EnvelopeDecider (see "Deciding before DATA"
// above). Only a decided reject or tempfail is worth acting on before DATA:
// every other action needs the content.
func (e *Engine) DecideBeforeData(tx *pipeline.Transaction, findings []pipeline.Finding) (Verdict, bool) {
	ctx := &evalContext{tx: tx, findings: findings, e: e}
	for i := range e.rules {
		r := &e.rules[i]
		switch r.beforeData(ctx) {
		case no:
			continue
		case unknown:
			return Verdict{}, false
		}
		// The guard of Decide only changes delivering verdicts, and those
		// need the scan finding: the verdict stands as the rule gives it.
		return r.verdict(ctx), true
	}
	return Verdict{Action: Deliver, Rule: "default"}, true
}

// beforeData is the rule's match on the envelope: false as soon as one
// condition is false, else unknown if one is unknown.
func (r *rule) beforeData(c *evalContext) tri {
	cond := &r.cond
	all := yes
	for _, st := range cond.stages {
		t := envelopeStage(c, st.stage, st.words)
		if st.stage == liststage.Name {
			t = envelopeLists(c, st.words)
		}
		switch t {
		case no:
			return no
		case unknown:
			all = unknown
		}
	}
	for _, t := range []func() tri{
		func() tri {
			if cond.client == nil {
				return yes
			}
			return known(c.tx.Client.IsValid() && cond.client.Contains(c.tx.Client))
		},
		func() tri { return known(cond.from == nil || addressMatches(cond.from, c.tx.From)) },
		// Recipients: the list is complete only at DATA, and a later
		// RCPT could still make "any recipient matches" true.
		func() tri { return unknownIf(cond.to != nil || cond.rcptDomain != nil) },
		func() tri { return unknownIf(cond.subjectTag != "" || cond.header != nil || cond.sizeOver > 0) },
		// A reply that names what only the content shows must be written
		// after DATA.
		func() tri { return unknownIf(r.reply != nil && replyNeedsContent(r.reply.Text)) },
	} {
		switch t() {
		case no:
			return no
		case unknown:
			all = unknown
		}
	}
	return all
}

func unknownIf(b bool) tri {
	if b {
		return unknown
	}
	return yes
}

// envelopeStage is a stage condition before DATA: known only from an
// answer (clean or listed) of a stage that looks at the envelope (ERS). A
// stage that needs the content (WRS, scan) has no finding yet, and a
// skipped or disabled lookup is looked at again after DATA, where the
// keywords skipped and disabled may then match: both are unknown.
func envelopeStage(c *evalContext, stage pipeline.StageName, words []string) tri {
	f, ok := c.finding(stage)
	if !ok || (f.Status != pipeline.Clean && f.Status != pipeline.Listed) {
		return unknown
	}
	return known(stageMatches(c, stage, words))
}

// envelopeLists is a list condition before DATA. The lists stage looks at
// the client and sender lists before DATA, not at the links: a hit on a
// client or sender list makes the condition true (any listed name
// matches), but without one, a blocked_urls in the condition leaves it
// open.
func envelopeLists(c *evalContext, names []string) tri {
	if _, ok := c.finding(liststage.Name); !ok {
		return unknown
	}
	if stageMatches(c, liststage.Name, names) {
		return yes
	}
	for _, n := range names {
		if n == lists.BlockedURLs.String() {
			return unknown
		}
	}
	return no
}

// replyNeedsContent: the reply text uses a variable only the content
// fills.
func replyNeedsContent(text string) bool {
	return strings.Contains(text, "{wrs.") || strings.Contains(text, "{scan.")
}
