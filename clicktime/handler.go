package clicktime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// URLChecker judges a URL at click time: web reputation (WRS) in foxproxy.
type URLChecker interface {
	// CheckURL looks rawURL (an absolute http or https URL) up now. A
	// listing is a result, not an error. A non-nil error means the URL
	// could not be judged: the reputation service is unreachable, its
	// breaker is open, or ctx ended; the handler then applies
	// HandlerConfig.OnUnavailable. It must honour ctx.
	CheckURL(ctx context.Context, rawURL string) (CheckResult, error)
}

// CheckResult is a URLChecker's judgement.
type CheckResult struct {
	// Listed is set when any list has the URL, its host or its domain.
	Listed bool
	// Categories are the listings' categories ("phish", "malware").
	Categories []string
	// Zone names the lists that listed it, for the log and the block page.
	Zone string
}

// What a click does when the URL cannot be checked.
const (
	OnUnavailableWarn  = "warn"  // an interstitial page with a continue link
	OnUnavailableAllow = "allow" // redirect as if clean
	OnUnavailableBlock = "block" // a page that does not let the user on
)

// Verdicts of a click, in the log and in foxproxy_clicks_total.
const (
	VerdictClean            = "clean"
	VerdictListed           = "listed"
	VerdictUnavailableWarn  = "unavailable_warn"
	VerdictUnavailableAllow = "unavailable_allow"
	VerdictUnavailableBlock = "unavailable_block"
	VerdictInvalid          = "invalid"
)

// DefaultCheckTimeout bounds one click's check.
const DefaultCheckTimeout = 5 * time.Second

// Metrics are the click service's instruments. Make them once per
// registry and share them between the handlers of successive
// configurations.
type Metrics struct {
	clicks  *prometheus.CounterVec
	seconds prometheus.Histogram
}

// NewMetrics registers foxproxy_clicks_total{verdict} and
// foxproxy_click_check_duration_seconds in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		clicks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "foxproxy_clicks_total",
			Help: "Clicks on rewritten links by verdict (clean, listed, unavailable_warn, unavailable_allow, unavailable_block, invalid)."},
			[]string{"verdict"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "foxproxy_click_check_duration_seconds",
			Help:    "Time the click-time reputation check took.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	for _, v := range []string{VerdictClean, VerdictListed, VerdictUnavailableWarn, VerdictUnavailableAllow, VerdictUnavailableBlock, VerdictInvalid} {
		m.clicks.WithLabelValues(v) // present from the start, at 0
	}
	if reg != nil {
		reg.MustRegister(m.clicks, m.seconds)
	}
	return m
}

// HandlerConfig configures the click service.
type HandlerConfig struct {
	// Signer verifies the tokens.
	Signer *Signer
	// Checker judges the URLs.
	Checker URLChecker
	// OnUnavailable is warn (default), allow or block.
	OnUnavailable string
	// Timeout bounds one check (default DefaultCheckTimeout); past it the
	// URL counts as unavailable.
	Timeout time.Duration
	// Logger gets one line per click (default: none).
	Logger *zap.Logger
	// Metrics counts the clicks (default: not counted).
	Metrics *Metrics
}

// Handler is the click service: GET /c/<token> and /healthz.
//
//   - a token that does not verify: 400 and a page saying so, never a
//     redirect (the service must not be an open redirector);
//   - clean: 302 to the original URL;
//   - listed: 403 and a block page naming the categories; the link is not
//     shown as a link. 403 rather than 200, so that link scanners and
//     monitoring see a refusal;
//   - not checkable: OnUnavailable: warn answers 200 with an interstitial
//     that shows the destination and a continue link; allow redirects;
//     block answers 503 with a page saying the link could not be checked.
//
// Every answer is no-store (the verdict may change) and no-referrer (the
// destination never learns the token).
type Handler struct {
	cfg HandlerConfig
	log *zap.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns the click service's handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Signer == nil || cfg.Checker == nil {
		return nil, errors.New("clicktime: handler needs a signer and a checker")
	}
	switch cfg.OnUnavailable {
	case "":
		cfg.OnUnavailable = OnUnavailableWarn
	case OnUnavailableWarn, OnUnavailableAllow, OnUnavailableBlock:
	default:
		return nil, fmt.Errorf("clicktime: on_unavailable %q is not one of warn, allow, block", cfg.OnUnavailable)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultCheckTimeout
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "/healthz" {
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
		return
	}
	// The token is the last path segment after "/c/", so a reverse proxy
	// may put the service under a path of its own.
	i := strings.LastIndex(r.URL.Path, "/c/")
	if i < 0 {
		h.page(w, http.StatusNotFound, page{Title: "Not found", Heading: "Nothing here",
			Text: "This address is not a link."})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		h.page(w, http.StatusMethodNotAllowed, page{Title: "Not allowed", Heading: "Not allowed", Text: "Open this link in a browser."})
		return
	}
	token := strings.TrimSuffix(r.URL.Path[i+3:], "/")
	target, ref, keyID, err := h.cfg.Signer.Verify(token)
	if err != nil {
		h.count(VerdictInvalid)
		h.log.Info("click", zap.String("verdict", VerdictInvalid), zap.String("reason", err.Error()))
		h.page(w, http.StatusBadRequest, page{Title: "Invalid link", Heading: "This link is not valid",
			Text: "The link is damaged or incomplete. Copy it again from the message, or ask the sender for the address."})
		return
	}
	host := hostOf(target)
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	start := time.Now()
	res, cerr := h.cfg.Checker.CheckURL(ctx, target)
	took := time.Since(start)
	cancel()
	if h.cfg.Metrics != nil {
		h.cfg.Metrics.seconds.Observe(took.Seconds())
	}
	var verdict string
	switch {
	case cerr == nil && res.Listed:
		verdict = VerdictListed
	case cerr == nil:
		verdict = VerdictClean
	default:
		verdict = "unavailable_" + h.cfg.OnUnavailable
	}
	h.count(verdict)
	fields := []zap.Field{zap.String("verdict", verdict), zap.String("msg_ref", ref), zap.String("host", host),
		zap.String("key_id", keyID), zap.Duration("took", took)}
	if res.Listed {
		fields = append(fields, zap.Strings("categories", res.Categories), zap.String("zone", res.Zone))
	}
	if cerr != nil {
		fields = append(fields, zap.String("error", cerr.Error()))
	}
	h.log.Info("click", fields...)

	switch verdict {
	case VerdictClean, VerdictUnavailableAllow:
		hd.Set("Location", locationURL(target))
		w.WriteHeader(http.StatusFound)
	case VerdictListed:
		cats := "harmful"
		if len(res.Categories) > 0 {
			cats = strings.Join(res.Categories, ", ")
		}
		h.page(w, http.StatusForbidden, page{Title: "Link blocked", Heading: "This link was blocked", Kind: "block",
			Text: "The site is listed as dangerous: " + cats + ". It was not opened.", Dest: target,
			Detail: "If you believe this is a mistake, contact your mail administrator."})
	case VerdictUnavailableWarn:
		h.page(w, http.StatusOK, page{Title: "Check not possible", Heading: "This link could not be checked", Kind: "warn",
			Text: "The link checking service cannot be reached right now. Continue only if you trust the sender and the address below.",
			Dest: target, Continue: target})
	case VerdictUnavailableBlock:
		h.page(w, http.StatusServiceUnavailable, page{Title: "Check not possible", Heading: "This link could not be checked", Kind: "block",
			Text: "The link checking service cannot be reached right now, so the link was not opened. Try again later.", Dest: target})
	}
}

func (h *Handler) count(verdict string) {
	if h.cfg.Metrics != nil {
		h.cfg.Metrics.clicks.WithLabelValues(verdict).Inc()
	}
}

// hostOf is what the log keeps of a URL: its host, never the path or
// query, which may identify the recipient (tracking ids, reset tokens).
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.ToLower(p.Hostname())
}

// locationURL percent-encodes what a Location header must not carry raw
// (bytes outside printable ASCII; Verify already refused controls).
func locationURL(u string) string {
	if isASCII(u) {
		return u
	}
	var b strings.Builder
	for i := 0; i < len(u); i++ {
		if c := u[i]; c >= 0x80 {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// page is what the page template shows.
type page struct {
	Title, Heading, Text, Detail string
	// Kind is "warn" or "block" (the colour of the heading), or "".
	Kind string
	// Dest is the destination, shown as text, never as a link.
	Dest string
	// Continue, when set, is the continue link's target.
	Continue string
}

// The pages have no external resources (CSS inline, no images, no
// scripts; the Content-Security-Policy says so too) and a viewport for
// phones. html/template escapes Dest as text and Continue as a URL.
var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{{.Title}}</title>
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f4f5;color:#18181b}
main{max-width:36rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.4rem;margin:0 0 1rem}
.block h1{color:#b91c1c}.warn h1{color:#b45309}
.dest{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem;background:#f4f4f5;padding:.5rem;border-radius:4px;word-break:break-all}
a.continue{display:inline-block;margin-top:1rem;padding:.6rem 1rem;background:#b45309;color:#fff;border-radius:4px;text-decoration:none}
.detail{color:#52525b;font-size:.9rem}
@media (max-width:40rem){main{margin:0;border-radius:0;box-shadow:none}}
</style>
</head>
<body>
<main class="{{.Kind}}">
<h1>{{.Heading}}</h1>
<p id="text">{{.Text}}</p>
{{- if .Dest}}
<p>Destination:</p>
<p class="dest" id="dest">{{.Dest}}</p>
{{- end}}
{{- if .Continue}}
<p><a class="continue" id="continue" href="{{.Continue}}" rel="noreferrer noopener">Continue to the site</a></p>
{{- end}}
{{- if .Detail}}
<p class="detail">{{.Detail}}</p>
{{- end}}
</main>
</body>
</html>
`))

func (h *Handler) page(w http.ResponseWriter, status int, p page) {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		h.log.Error("click page", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
