package reputation

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
)

// cannedTransport answers every request with 200 and body.
type cannedTransport struct{ body []byte }

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(c.body)), Request: r}, nil
}

// FuzzSafeBrowsingResponse feeds arbitrary answers to the Safe Browsing
// Lookup API client. It must never panic; a listing is only ever pinned on
// a URL that was asked about, with known categories, sorted.
func FuzzSafeBrowsingResponse(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"matches":[{"threatType":"SOCIAL_ENGINEERING","platformType":"ANY_PLATFORM","threatEntryType":"URL","threat":{"url":"http://phishy.example.net/login"},"cacheDuration":"300s"}]}`,
		`{"matches":[{"threatType":"MALWARE","threat":{"url":"http://phishy.example.net/login"},"cacheDuration":"1e400s"},{"threatType":"NEW_KIND","threat":{"url":"http://phishy.example.net/login"}}]}`,
		`{"matches":[{"threatType":"MALWARE","threat":{"url":"http://elsewhere.example/"}}]}`,
		`{"matches": null}`, `null`, `[]`, `{"matches":[{}]}`, `{"matches":"x"}`,
	} {
		f.Add([]byte(s))
	}
	asked := []string{"http://phishy.example.net/login", "https://docs.example.org/guide"}
	known := map[string]bool{CategoryListed: true}
	for _, c := range DefaultThreatTypes() {
		known[c] = true
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := NewSafeBrowsing(SafeBrowsingConfig{APIKey: "k", CacheSize: -1, Transport: cannedTransport{body}})
		if err != nil {
			t.Fatal(err)
		}
		found, err := s.findAll(context.Background(), asked)
		if err != nil && len(found) > 0 {
			t.Fatalf("an error (%v) and listings %v from one request", err, found)
		}
		for u, cats := range found {
			if !slices.Contains(asked, u) {
				t.Fatalf("listing for %q, which was not asked about", u)
			}
			if len(cats) == 0 || !slices.IsSorted(cats) {
				t.Fatalf("categories %q", cats)
			}
			for _, c := range cats {
				if !known[c] {
					t.Fatalf("category %q", c)
				}
			}
		}
		if d := s.cacheDuration(string(body)); d < 0 || d > s.maxCache {
			t.Fatalf("cache duration %v", d)
		}
	})
}
