// Package liststage is the "lists" pipeline stage: it reports which of the
// local lists (package lists) the message's client, sender and links are
// on, so that policy rules can name them (`if: {list: [blocked_clients]}`).
//
// It is its own package so that package lists, which config and the
// updater use too, stays free of the pipeline.
package liststage

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
)

// Name is the stage's name in findings, the trace header, logs and
// metrics. The policy's condition for it is if: {list: [...]}.
const Name pipeline.StageName = "lists"

// Statuses are the statuses the stage reports. A Listed finding's
// categories are the names of the lists that matched (lists.Names).
var Statuses = []pipeline.Status{pipeline.Clean, pipeline.Listed}

// Stage looks the message up in its lists snapshot (lists.FromContext). It
// makes no network access and never fails: no match is Clean, any match is
// Listed with the lists' names as categories.
type Stage struct {
	extractor *links.Extractor
}

var (
	_ pipeline.Stage             = (*Stage)(nil)
	_ pipeline.EnvelopeInspector = (*Stage)(nil)
)

// New returns the stage. Links are found the way WRS finds them, with
// extraction tuned by cfg; the extraction runs only while blocked_urls has
// entries. Given WRS's extraction settings, the two stages share one
// extraction per message (pipeline.Transaction.Links).
func New(cfg links.Config) (*Stage, error) {
	x, err := links.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Stage{extractor: x}, nil
}

// Name implements pipeline.Stage.
func (s *Stage) Name() pipeline.StageName { return Name }

// InspectEnvelope implements pipeline.EnvelopeInspector: the client and
// sender lists, without the links (blocked_urls needs the content; the
// policy knows that a blocked_urls condition is still open before DATA).
func (s *Stage) InspectEnvelope(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	env := *tx
	env.Message = nil
	return s.Inspect(ctx, &env)
}

// Inspect implements pipeline.Stage.
func (s *Stage) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	start := time.Now()
	f := pipeline.Finding{Stage: Name, Status: pipeline.Clean}
	set := lists.FromContext(ctx)
	hit := func(k lists.Kind, what, entry string) {
		if !f.Has(k.String()) {
			f.Categories = append(f.Categories, k.String())
		}
		f.Items = append(f.Items, pipeline.Item{What: what, Zone: k.String(), Category: entry})
	}
	if tx.Client.IsValid() {
		c := tx.Client.Unmap().String()
		if e, ok := set.ClientApproved(tx.Client); ok {
			hit(lists.ApprovedClients, c, e)
		}
		if e, ok := set.ClientBlocked(tx.Client); ok {
			hit(lists.BlockedClients, c, e)
		}
	}
	if tx.From != "" {
		if e, ok := set.SenderApproved(tx.From); ok {
			hit(lists.ApprovedSenders, tx.From, e)
		}
		if e, ok := set.SenderBlocked(tx.From); ok {
			hit(lists.BlockedSenders, tx.From, e)
		}
	}
	var linksErr error
	if set.Len(lists.BlockedURLs) > 0 {
		// Shared with WRS when its extraction settings are the same. When
		// ctx ends first, res holds the links found until then, or is nil.
		res, err := tx.Links(ctx, s.extractor)
		linksErr = err
		if res != nil {
			seen := map[string]bool{}
			for _, u := range res.URLs {
				if e, ok := set.URLBlocked(u.Host); ok && !seen[e] {
					seen[e] = true
					hit(lists.BlockedURLs, u.Host, e)
				}
			}
		}
	}
	if len(f.Categories) > 0 {
		f.Status = pipeline.Listed
		slices.Sort(f.Categories) // the pipeline's contract: sorted
		var details []string
		for _, it := range f.Items {
			details = append(details, it.Zone+": "+it.Category)
		}
		f.Detail = strings.Join(details, "; ")
	}
	if linksErr != nil {
		// Not silent: some links may not have been looked up.
		f.Detail = strings.TrimPrefix(f.Detail+"; links not all read: "+linksErr.Error(), "; ")
	}
	f.Duration = time.Since(start)
	return f
}
