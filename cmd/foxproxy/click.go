package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/clicktime"
	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/health"
)

// Time-of-click protection (clicktime): the rewriter the proxy calls for
// verdicts with rewrite_links, and the click service's own HTTP listener.

// linkRewriter adapts clicktime.Rewriter to delivery.LinkRewriter.
type linkRewriter struct{ r *clicktime.Rewriter }

var _ delivery.LinkRewriter = linkRewriter{}

func (l linkRewriter) RewriteLinks(msgRef string, src io.Reader, dst io.Writer) (string, error) {
	res, err := l.r.Rewrite(msgRef, src, dst)
	if err != nil {
		return "links=not-rewritten:error", err
	}
	return res.Note(), nil
}

// buildLinkRewriter returns the rewriter for cfg, or nil when no rule
// rewrites links. The keys are read from their files here, so a SIGHUP
// picks up rotated keys.
func buildLinkRewriter(cfg *config.Config) (delivery.LinkRewriter, error) {
	if !cfg.RewritesLinks() {
		return nil, nil
	}
	signer, err := clickSigner(cfg.Click)
	if err != nil {
		return nil, err
	}
	r, err := clicktime.NewRewriter(clicktime.RewriterConfig{BaseURL: cfg.Click.BaseURL, Signer: signer,
		ExcludeDomains: cfg.Click.ExcludeDomains, MaxLinks: cfg.Click.MaxLinks, RewriteSigned: cfg.Click.RewriteSigned})
	if err != nil {
		return nil, fmt.Errorf("click: %w", err)
	}
	return linkRewriter{r}, nil
}

func clickSigner(c config.Click) (*clicktime.Signer, error) {
	keys, err := c.LoadKeys()
	if err != nil {
		return nil, err
	}
	s, err := clicktime.NewSigner(keys)
	if err != nil {
		return nil, fmt.Errorf("click: %w", err)
	}
	return s, nil
}

// wrsChecker asks the running configuration's WRS, whichever that is
// after reloads, so a click uses the same breakers and caches as mail.
type wrsChecker struct{ current func() *wired }

var errNoWRS = errors.New("wrs is not configured")

func (c wrsChecker) CheckURL(ctx context.Context, rawURL string) (clicktime.CheckResult, error) {
	w := c.current()
	if w == nil || w.wrs == nil {
		return clicktime.CheckResult{}, errNoWRS
	}
	v, err := w.wrs.CheckURL(ctx, rawURL)
	if err != nil {
		return clicktime.CheckResult{}, err
	}
	return clicktime.CheckResult{Listed: v.Listed, Categories: v.Categories, Zone: v.Lists}, nil
}

var _ clicktime.URLChecker = wrsChecker{}

// clickReports is the click service's row in /status (the appliance's
// failure table, row 6), when this process serves clicks: the running WRS
// as a click uses it (reputation.WRS.ClickReport).
func (w *wired) clickReports() []health.Report {
	return []health.Report{w.wrs.ClickReport(w.Config.Click.OnUnavailable)}
}

// clickServer is the click service's listener. It lives as long as the
// process; a reload swaps its handler (keys, on_unavailable, timeout), but
// a new click.listen needs a restart.
type clickServer struct {
	listen  string
	handler atomic.Pointer[clicktime.Handler]
	metrics *clicktime.Metrics
	current func() *wired
	http    *http.Server
	log     *zap.Logger
}

// startClick starts the click listener when click.listen is set. Like the
// admin listener, a failure to listen is logged and mail keeps flowing.
func startClick(cfg *config.Config, current func() *wired, reg prometheus.Registerer, log *zap.Logger) *clickServer {
	c := &clickServer{listen: cfg.Click.Listen, metrics: clicktime.NewMetrics(reg), current: current, log: log}
	if cfg.Click.Listen == "" {
		return c
	}
	if err := c.use(cfg); err != nil {
		log.Error("click service not started", zap.Error(err))
		return c
	}
	ln, err := net.Listen("tcp", cfg.Click.Listen)
	if err != nil {
		log.Error("cannot listen for the click service; rewritten links will not resolve", zap.String("click_listen", cfg.Click.Listen), zap.Error(err))
		return c
	}
	c.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.handler.Load().ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	go c.http.Serve(ln)
	log.Info("click service listening", zap.Stringer("listen", ln.Addr()), zap.String("base_url", cfg.Click.BaseURL),
		zap.String("signing_key", cfg.Click.Keys[0].ID), zap.String("on_unavailable", cfg.Click.OnUnavailable))
	return c
}

// use builds the handler for cfg (re-reading the key files) and puts it
// in place. On error the running handler stays.
func (c *clickServer) use(cfg *config.Config) error {
	if cfg.Click.Listen != c.listen {
		c.log.Warn("click.listen changed: takes effect after a restart", zap.String("running", c.listen), zap.String("configured", cfg.Click.Listen))
	}
	if c.listen == "" {
		return nil
	}
	signer, err := clickSigner(cfg.Click)
	if err != nil {
		return err
	}
	h, err := clicktime.NewHandler(clicktime.HandlerConfig{Signer: signer, Checker: wrsChecker{c.current},
		OnUnavailable: cfg.Click.OnUnavailable, Timeout: cfg.Click.CheckTimeout.D(), Logger: c.log, Metrics: c.metrics})
	if err != nil {
		return err
	}
	c.handler.Store(h)
	return nil
}

func (c *clickServer) stop() {
	if c.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.http.Shutdown(ctx)
}
