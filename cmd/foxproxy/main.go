// Command foxproxy is an SMTP content filter for Postfix: it receives mail
// from Postfix, checks it, and re-injects what the policy accepts.
//
//	foxproxy [-config FILE]               run (the embedded default without -config)
//	foxproxy check-config [-config FILE]  validate a configuration and exit
//	foxproxy version                      print the version
//	foxproxy help                         list the commands (also -h, --help; usage.go)
//	foxproxy quarantine list|show|release|delete|purge|import [-config FILE] ...
//	                                      work with quarantined mail (quarantine.go)
//	foxproxy policy test [-config FILE] --client IP --from A --to B MESSAGE.eml
//	                                      dry-run the checks and rules on a message (policytest.go)
//	foxproxy status [-admin URL]          the running foxproxy's dependencies (ops.go)
//	foxproxy healthcheck [-admin URL]     exit 0 when /readyz says ready (ops.go)
//	foxproxy update [-config FILE]        fetch the list bundle now, print what changed (update.go)
//	foxproxy bundle keygen|sign ...       make a key pair, sign a list bundle (bundle.go)
//	foxproxy db migrate [-config FILE]    apply the custody database's schema migrations (database.go)
//	foxproxy passwd < FILE                hash a console password (passwd.go)
//
// Exit status: 0 success, 1 failure, 2 usage error (for run: a refused
// configuration).
//
// Signals: SIGTERM and SIGINT drain and stop; SIGHUP re-reads the
// configuration and keeps the running one if the new one is bad. The
// daemon catches them first thing in main (signals.go), so a signal during
// start-up never kills it; the other commands keep the default behaviour.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/proxy"
)

func main() {
	args := os.Args[1:]
	var sigs *daemonSignals
	if cmd, _ := splitCommand(args); cmd == "run" {
		// Before anything that takes time: logrotate, systemd and
		// orchestrators send SIGHUP and SIGTERM whenever they like.
		sigs = catchDaemonSignals()
	}
	os.Exit(runWith(args, os.Stdout, os.Stderr, sigs))
}

// splitCommand splits the command off args: "run" when the first argument is a
// flag or there is none.
func splitCommand(args []string) (string, []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "run", args
}

// run runs the command in args; the daemon catches its signals in serve.
func run(args []string, stdout, stderr io.Writer) int {
	return runWith(args, stdout, stderr, nil)
}

// runWith runs the command in args; sigs, if not nil, are the daemon's
// signals, caught since main began.
func runWith(args []string, stdout, stderr io.Writer, sigs *daemonSignals) int {
	cmd, args := splitCommand(args)
	var stdin io.Reader = os.Stdin
	// Commands with flags and arguments of their own.
	switch cmd {
	case "help":
		printUsage(stdout)
		return 0
	case "quarantine":
		return quarantineCmd(args, stdout, stderr)
	case "policy":
		return policyCmd(args, stdout, stderr)
	case "status":
		return statusCmd(args, stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(args, stdout, stderr)
	case "update":
		return updateCmd(args, stdout, stderr)
	case "bundle":
		return bundleCmd(args, stdout, stderr)
	case "db":
		return dbCmd(args, stdout, stderr)
	case "passwd":
		return passwdCmd(args, stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("foxproxy "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); empty: the embedded default")
	if cmd == "run" {
		// "foxproxy -h" asks what foxproxy can do, not only how to run it:
		// the list of commands, on stdout as asked for.
		fs.Usage = func() {}
	}
	if err := fs.Parse(args); err != nil {
		if cmd == "run" {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(stdout)
				return 0
			}
			printUsage(stderr) // after flag's line naming the bad flag
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "foxproxy %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "foxproxy %s (%s, %s/%s)\n", delivery.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "check-config":
		return checkConfig(*cfgPath, stdout, stderr)
	case "run":
		return serve(*cfgPath, stderr, sigs)
	}
	fmt.Fprintf(stderr, "foxproxy: unknown command %q\n", cmd)
	printUsage(stderr)
	return 2
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func checkConfig(path string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", cfg.File)
	printSummary(stdout, cfg)
	return 0
}

func newLogger(cfg *config.Config, w io.Writer, level zap.AtomicLevel) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.MillisDurationEncoder
	var enc zapcore.Encoder
	if cfg.Log.Format == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level))
}

func parseLevel(s string) zapcore.Level {
	l, err := zapcore.ParseLevel(s)
	if err != nil {
		return zapcore.InfoLevel
	}
	return l
}

// serve runs the daemon. sigs are its signals, caught since main began
// (nil: caught here, for callers other than main). A SIGHUP during start-up
// is one reload once serving, unless it came before the file was read; a
// SIGTERM or SIGINT during start-up stops it before it serves, with 0.
func serve(path string, stderr io.Writer, sigs *daemonSignals) int {
	if sigs == nil {
		sigs = catchDaemonSignals()
		defer sigs.release()
	}
	// The file is read now: that is what an earlier SIGHUP asked for.
	sigs.dropReload()
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy: refusing to start: %v\n", err)
		return 2
	}
	level := zap.NewAtomicLevelAt(parseLevel(cfg.Log.Level))
	log := newLogger(cfg, stderr, level)
	defer log.Sync()
	if sig, ok := sigs.stopPending(); ok {
		log.Info("foxproxy stopped during start-up", zap.String("signal", sig.String()))
		return 0
	}

	rt, err := wire(cfg, log)
	if err != nil {
		log.Error("refusing to start", zap.Error(err))
		return 2
	}
	rt.startBackground()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("cannot listen", zap.String("listen", cfg.Listen), zap.Error(err))
		rt.close()
		return 1
	}
	if sig, ok := sigs.stopPending(); ok {
		// Nothing was accepted yet: nothing to drain.
		ln.Close()
		rt.close()
		log.Info("foxproxy stopped during start-up", zap.String("signal", sig.String()))
		return 0
	}
	srv := proxy.NewServer(rt.Runtime, log)
	ops := startOps(cfg, rt, srv, log)
	defer ops.stop()
	log.Info("foxproxy started", zap.String("version", delivery.Version), zap.String("config", cfg.File),
		zap.Stringer("listen", ln.Addr()), zap.String("downstream", cfg.Downstream), zap.Strings("stages", rt.stageNames()),
		zap.String("admin", cfg.AdminListen))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	current := rt
	for {
		select {
		case err := <-served:
			log.Error("server stopped", zap.Error(err))
			current.close()
			return 1
		case <-sigs.reload:
			next := reload(path, srv, current, level, log)
			if next != current {
				// The operations side (observers, the message log's
				// writer) moves first: a message that ends meanwhile is
				// recorded by the old runtime's writer, still open.
				ops.use(next)
				// Sessions that started on the old runtime keep using
				// it until they end; its background workers stop with it.
				current.closeWhenIdle(srv)
				current = next
			}
		case sig := <-sigs.stop:
			log.Info("shutting down: draining sessions", zap.String("signal", sig.String()),
				zap.Duration("deadline", cfg.Timeouts.Shutdown.D()))
			ctx, cancel := context.WithTimeout(context.Background(), current.Runtime.Config.Timeouts.Shutdown.D())
			err := srv.Shutdown(ctx)
			cancel()
			// Shutdown closes the listener only once Serve has taken it:
			// a SIGTERM right after start may come before that.
			ln.Close()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				log.Warn("shutdown", zap.Error(err))
			} else if err != nil {
				log.Warn("shutdown deadline reached: closed the remaining sessions; their messages were not acknowledged and will be retried")
			}
			current.close()
			log.Info("foxproxy stopped")
			return 0
		}
	}
}

// reload re-reads the configuration. A bad file is refused with its
// problems logged, and the running configuration stays.
func reload(path string, srv *proxy.Server, current *wired, level zap.AtomicLevel, log *zap.Logger) *wired {
	if path == "" {
		log.Info("SIGHUP: running on the embedded default configuration; nothing to re-read")
		return current
	}
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("SIGHUP: new configuration refused; keeping the running one", zap.Error(err))
		return current
	}
	next, err := wire(cfg, log)
	if err != nil {
		log.Error("SIGHUP: new configuration refused; keeping the running one", zap.Error(err))
		return current
	}
	next.startBackground()
	if keys := srv.Reload(next.Runtime); len(keys) > 0 {
		log.Warn("SIGHUP: some changed settings take effect only after a restart", zap.Strings("keys", keys))
	}
	level.SetLevel(parseLevel(cfg.Log.Level))
	log.Info("SIGHUP: configuration reloaded", zap.String("config", cfg.File), zap.Strings("stages", next.stageNames()))
	return next
}
