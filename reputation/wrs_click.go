package reputation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/foxproxy/foxproxy/links"
)

// URLVerdict is WRS's judgement of one URL at click time.
type URLVerdict struct {
	// Listed is set when a backend lists the URL, its host or its
	// registrable domain.
	Listed bool
	// Categories are the listings' categories, sorted, without duplicates.
	Categories []string
	// Lists names the backends that listed it (zones, "safebrowsing"),
	// joined with ", ".
	Lists string
}

// ErrURLUnchecked is wrapped by CheckURL's error when some backend could
// not answer and none listed the URL.
var ErrURLUnchecked = errors.New("wrs: url not checked")

// CheckURL judges one URL now, for time-of-click protection. The URL is
// normalised as the extractor normalises the URLs of a message
// (links.Normalize: case, IDNA, numeric hosts) and its keys (registrable
// domain, host, IP) are asked of every backend through the same breakers
// and caches as Inspect, so a click on a link of a message just checked
// costs no lookup.
//
// A listing by any backend is a verdict even when others failed. With no
// listing, every backend must have answered: an open breaker, a failed or
// timed-out lookup, or a closed WRS is an error wrapping ErrURLUnchecked,
// which the click service treats as "unavailable". A URL that cannot be
// normalised (no registrable domain, e.g. http://localhost/) is clean:
// there is nothing a list could say about it.
func (w *WRS) CheckURL(ctx context.Context, rawURL string) (URLVerdict, error) {
	if w.closed.Load() {
		return URLVerdict{}, fmt.Errorf("%w: stage closed", ErrURLUnchecked)
	}
	u, err := links.Normalize(rawURL)
	if err != nil {
		return URLVerdict{}, nil
	}
	res := &links.Result{URLs: []links.URL{u}}
	// The local blocked_urls list in force now, not when the message
	// came: a domain blocked since is blocked at the click.
	local, rest := blockedLocally(w.lists.Current(), res)
	outs, names := []outcome{{res: local}}, []string{LocalListName}
	if len(rest.URLs) > 0 {
		outs = append(outs, w.askAll(ctx, &Query{URLs: rest.URLs, Keys: rest.Keys()})...)
		names = append(names, w.backendNames()...)
	}
	t := tallyOutcomes(outs, names)
	if len(t.listedBy) > 0 {
		return URLVerdict{Listed: true, Categories: t.categories, Lists: strings.Join(t.listedBy, ", ")}, nil
	}
	if len(t.problems) > 0 {
		return URLVerdict{}, fmt.Errorf("%w: %s", ErrURLUnchecked, strings.Join(t.problems, "; "))
	}
	return URLVerdict{}, nil
}
