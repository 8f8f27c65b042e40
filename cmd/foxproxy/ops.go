package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/metrics"
	"github.com/foxproxy/foxproxy/proxy"
)

// ops is the operations side of a running foxproxy: metrics, the health
// monitor and the admin HTTP listener. It lives as long as the process; a
// reload only points it at the new runtime.
type ops struct {
	current atomic.Pointer[wired]
	monitor *admin.Monitor
	http    *http.Server
	cancel  context.CancelFunc
	log     *zap.Logger
	// stopRescan stops the current runtime's rescan of held mail (hold.go).
	stopRescan func()
	// click is the click service's listener (click.go).
	click *clickServer
	// messages keeps every message's record (msglog.go), for the
	// console's and the API's searches.
	messages *messageLog
	// console is the web console on the admin listener (console.go), and
	// cert the listener's certificate under admin_tls; both nil without.
	console *console.Server
	cert    *adminCert
}

func startOps(cfg *config.Config, rt *wired, srv *proxy.Server, log *zap.Logger) *ops {
	o := &ops{log: log}
	o.current.Store(rt)
	o.stopRescan = startRescan(rt, log)
	o.monitor = admin.NewMonitor(cfg.Downstream, cfg.AdminProbeInterval.D(), log.Named("health"))
	o.monitor.SetSources(rt.sources())
	m := metrics.New(metrics.Gauges{
		Dependencies: o.monitor.Dependencies,
		ScanMode:     func() string { mode, _ := o.monitor.ScanMode(); return mode },
		Counters:     func() map[string]uint64 { return o.current.Load().counters() },
		Held:         o.monitor.Held,
	})
	m.Registry.MustRegister(listsCollector{o.current.Load}) // lists.go
	recent := admin.NewRecent()
	o.messages = newMessageLog()
	o.messages.use(rt.msglog, rt.logDB)
	srv.SetObserver(observers{m, recent, o.messages})
	o.click = startClick(cfg, o.current.Load, m.Registry, log.Named("click"))

	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	go o.monitor.Run(ctx)

	if cfg.AdminListen == "" {
		return o
	}
	o.console = console.New(console.Options{
		Config:     cfg.Console,
		Quarantine: storeArea{current: o.current.Load, now: time.Now},
		Held:       storeArea{held: true, current: o.current.Load, now: time.Now},
		Messages:   o.messages,
		Audit:      consoleAudit{current: o.current.Load},
		Log:        log.Named("console"),
		Local:      admin.FromLoopback,
		Host:       cfg.Proxy().HostnameOrDefault(),
	})
	h := &admin.Handler{
		Monitor: o.monitor, Recent: recent, Registry: m.Registry, Pprof: cfg.AdminPprof, AdminListen: cfg.AdminListen,
		Console: o.console, Accounts: o.console, MetricsAuth: func() bool { return o.current.Load().Config.AdminMetricsAuth },
		Info: admin.Info{
			Version: delivery.Version, Started: time.Now(), Sessions: srv.Sessions,
			Listen: func() string {
				if a := srv.Addr(); a != nil {
					return a.String()
				}
				return ""
			},
		},
	}
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		// Mail matters more than the admin page: keep running, say so.
		log.Error("cannot listen for admin; running without /metrics and /status", zap.String("admin_listen", cfg.AdminListen), zap.Error(err))
		return o
	}
	if cfg.AdminTLS.Enabled() {
		o.cert = &adminCert{}
		if err := o.cert.load(cfg.AdminTLS.CertFile, cfg.AdminTLS.KeyFile); err != nil {
			// Never fall back to plain HTTP: logins would cross in clear.
			ln.Close()
			log.Error("cannot load admin_tls; running without the admin listener", zap.Error(err))
			return o
		}
		ln = tls.NewListener(ln, o.cert.tlsConfig())
	}
	if a, err := netip.ParseAddrPort(ln.Addr().String()); (err != nil || !a.Addr().Unmap().IsLoopback()) && len(cfg.Console.Users) == 0 {
		log.Info("admin_listen is not loopback: /healthz, /readyz, /metrics and /status without the last messages for anyone who reaches it; "+
			"mail data, the console and pprof only to clients on loopback; set console.users to log in from other hosts",
			zap.String("admin_listen", cfg.AdminListen))
	}
	o.http = &http.Server{Handler: h.ServeMux(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 60 * time.Second}
	go o.http.Serve(ln)
	return o
}

// use points the operations side at a reloaded runtime.
func (o *ops) use(w *wired) {
	o.current.Store(w)
	o.messages.use(w.msglog, w.logDB)
	o.stopRescan()
	o.stopRescan = startRescan(w, o.log)
	o.monitor.SetSources(w.sources())
	o.monitor.SetDownstream(w.Config.Downstream)
	if err := o.click.use(w.Config); err != nil {
		o.log.Error("SIGHUP: click service keeps its running keys and settings", zap.Error(err))
	}
	if o.console != nil {
		o.console.SetConfig(w.Config.Console)
	}
	if t := w.Config.AdminTLS; o.cert != nil && t.Enabled() {
		if err := o.cert.load(t.CertFile, t.KeyFile); err != nil {
			o.log.Error("SIGHUP: admin_tls keeps its running certificate", zap.Error(err))
		} else {
			o.log.Info("SIGHUP: admin_tls certificate re-read", zap.String("cert_file", t.CertFile))
		}
	} else if (o.cert != nil) != t.Enabled() && o.http != nil {
		o.log.Warn("SIGHUP: turning admin_tls on or off takes effect only after a restart")
	}
}

func (o *ops) stop() {
	o.stopRescan()
	o.click.stop()
	o.cancel()
	if o.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		o.http.Shutdown(ctx)
	}
}

// observers fans the proxy's reports out.
type observers []proxy.Observer

func (os observers) SessionOpened() {
	for _, o := range os {
		o.SessionOpened()
	}
}
func (os observers) SessionClosed() {
	for _, o := range os {
		o.SessionClosed()
	}
}
func (os observers) Refused(cmd string, code int) {
	for _, o := range os {
		o.Refused(cmd, code)
	}
}
func (os observers) Spooled(d int64) {
	for _, o := range os {
		o.Spooled(d)
	}
}
func (os observers) Message(ev proxy.MessageEvent) {
	for _, o := range os {
		o.Message(ev)
	}
}

// adminURL picks the admin endpoint: -admin, else the configuration's
// admin_listen.
func adminURL(flagURL, cfgPath string) (string, error) {
	if flagURL != "" {
		return flagURL, nil
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return "", err
	}
	if cfg.AdminListen == "" {
		return "", errors.New("admin_listen is empty in the configuration: give -admin URL")
	}
	return "http://" + cfg.AdminListen, nil
}

// statusCmd prints the running foxproxy's state. Exit 0 when every
// dependency is up, 1 otherwise (also when foxproxy cannot be reached), so
// monitoring scripts can use it.
func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("foxproxy status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("admin", "", "admin endpoint, e.g. http://127.0.0.1:10080 (default: admin_listen of -config)")
	cfgPath := fs.String("config", "", "configuration file to take admin_listen from")
	asJSON := fs.Bool("json", false, "print the JSON status")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2
	}
	base, err := adminURL(*url, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "foxproxy status:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := admin.Fetch(ctx, base)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy status: cannot reach foxproxy at %s: %v\n", base, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	} else {
		admin.Print(stdout, st)
	}
	if !st.Healthy() {
		return 1
	}
	return 0
}

// healthcheckCmd asks /readyz: for a container's HEALTHCHECK, which has no
// curl in a static image.
func healthcheckCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("foxproxy healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("admin", "", "admin endpoint (default: admin_listen of -config)")
	cfgPath := fs.String("config", "", "configuration file to take admin_listen from")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2
	}
	base, err := adminURL(*url, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "foxproxy healthcheck:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.Ready(ctx, base); err != nil {
		fmt.Fprintln(stderr, "foxproxy healthcheck:", err)
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	return 0
}
