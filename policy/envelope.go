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

// tri is a rule's match: before DATA a condition may not be known yet.
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
	r, decided := e.first(func(r *rule) tri { return r.beforeData(ctx) })
	switch {
	case !decided:
		return Verdict{}, false
	case r == nil:
		return defaultVerdict, true
	}
	// The guard of Decide only changes delivering verdicts, and those
	// need the scan finding: the verdict stands as the rule gives it.
	return r.verdict(ctx), true
}

// and is the conjunction of two conditions: no as soon as one is no, else
// unknown if one is unknown.
func (t tri) and(u tri) tri {
	if t == no || u == no {
		return no
	}
	if t == unknown || u == unknown {
		return unknown
	}
	return yes
}

// beforeData is the rule's match on the envelope: false as soon as one
// condition is false, else unknown if one is unknown.
func (r *rule) beforeData(c *evalContext) tri {
	cond := &r.cond
	all := yes
	for _, st := range cond.stages {
		if st.stage == liststage.Name {
			all = all.and(envelopeLists(c, st.words))
		} else {
			all = all.and(envelopeStage(c, st.stage, st.words))
		}
		if all == no {
			return no
		}
	}
	if cond.client != nil {
		all = all.and(known(c.tx.Client.IsValid() && cond.client.Contains(c.tx.Client)))
	}
	if cond.from != nil {
		all = all.and(known(addressMatches(cond.from, c.tx.From)))
	}
	// Recipients: the list is complete only at DATA, and a later RCPT
	// could still make "any recipient matches" true. The content
	// conditions need the message, and a reply that names what only the
	// content shows must be written after DATA.
	if cond.to != nil || cond.rcptDomain != nil ||
		cond.subjectTag != "" || cond.header != nil || cond.sizeOver > 0 ||
		(r.reply != nil && replyNeedsContent(r.reply.Text)) {
		all = all.and(unknown)
	}
	return all
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
