package reputation

import (
	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
)

// LocalListName is the zone name of a WRS hit on the local blocked_urls
// list, and LocalListCategory its category.
const (
	LocalListName     = "local"
	LocalListCategory = "blocked"
)

// blockedLocally splits a message's URLs into those whose host is on the
// local blocked_urls list (returned as hits, one per matching entry) and
// the rest, which still go to the backends. A locally blocked URL costs no
// DNS query and no Safe Browsing request.
func blockedLocally(set *lists.Set, res *links.Result) (BackendResult, *links.Result) {
	if set.Len(lists.BlockedURLs) == 0 {
		return BackendResult{}, res
	}
	var hits BackendResult
	rest := &links.Result{Truncated: res.Truncated, Parts: res.Parts, Bytes: res.Bytes}
	seen := map[string]bool{}
	for _, u := range res.URLs {
		entry, ok := set.URLBlocked(u.Host)
		if !ok {
			rest.URLs = append(rest.URLs, u)
			continue
		}
		if !seen[entry] {
			seen[entry] = true
			hits.Hits = append(hits.Hits, Hit{What: entry, URL: u.Normalized, Categories: []string{LocalListCategory}})
		}
	}
	hits.Cached = true
	return hits, rest
}
