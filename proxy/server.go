// Package proxy is foxproxy's SMTP side: it receives a message from Postfix,
// mirrors the envelope to the downstream smtpd, spools the content, runs the
// pipeline and the policy on it, and carries the verdict out.
//
// The one promise it keeps above all: the upstream hears 250 only after the
// downstream said 250 (or the message is safely quarantined), and every
// failure on the way answers 4xx, so Postfix keeps the message queued and
// retries. Nothing is ever lost or delivered in part.
//
// It is the server side only: sessions, the guard, the replies (reply.go
// builds every reply a client hears) and XFORWARD intake. Everything that
// puts a message into the downstream (the envelope, the SMTP client, the
// verdict's changes to the content, the trace header) is package
// delivery's, which proxy uses and which never answers a client.
//
// It is built on go-smtp's server. What go-smtp lacks (XFORWARD intake,
// content tracking for smuggling defence, per-read timeouts) lives in a
// thin connection wrapper, guardConn, so go-smtp's own state stays
// consistent.
package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
)

// Runtime is what sessions use and a SIGHUP may replace. Each session keeps
// the Runtime it started with, so a reload never changes a message midway.
type Runtime struct {
	Config     *Config
	Pipeline   *pipeline.Pipeline
	Policy     policy.Decider
	Quarantine Quarantiner // nil: quarantine verdicts tempfail
	// Lists holds the local lists in force (nil: none); each message takes
	// one snapshot of it when its checks start.
	Lists *lists.Holder
	// Links rewrites links for verdicts that ask for it (nil: no click
	// service configured).
	Links delivery.LinkRewriter
	// Encryption encrypts for encrypt verdicts and decrypts mail for
	// local recipients (nil: not configured).
	Encryption        Encryptor
	EncryptionActions EncryptionActions
}

// Quarantiner stores a message the policy quarantined. It returns only once
// the message is durably stored; an error makes the proxy answer 4xx.
type Quarantiner interface {
	Quarantine(ctx context.Context, q QuarantineItem) (id string, err error)
}

// QuarantineItem is everything needed to release a message later.
type QuarantineItem struct {
	Tx       *pipeline.Transaction
	Xforward Xforward
	// MailParams are the MAIL parameters to send again on release
	// (BODY, SMTPUTF8, RET, ENVID).
	MailParams map[string]string
	// RcptParams are the DSN parameters of each recipient's RCPT.
	RcptParams map[string]map[string]string
	Findings   []pipeline.Finding
	Verdict    policy.Verdict
	// Reason says why, when the verdict alone does not (an encryption
	// exception).
	Reason string
}

// Server is foxproxy's SMTP server.
type Server struct {
	log  *zap.Logger
	rt   atomic.Pointer[Runtime]
	smtp *smtp.Server
	now  func() time.Time
	obs  Observer
	// pool keeps idle connections to the downstream for every session's
	// next transaction (downstream_idle, downstream_max_idle).
	pool *delivery.Pool
	// maxMessageBytes is max_message_bytes as of the start: go-smtp
	// advertises it and cannot change it, so the SIZE check and the spool
	// use this one value, not a reloaded configuration's.
	maxMessageBytes int64

	mu       sync.Mutex
	idle     *sync.Cond // signalled when a session ends
	guards   map[*guardConn]struct{}
	rtUsers  map[*Runtime]int // open sessions per runtime
	draining bool
	ln       net.Listener
}

// NewServer returns a server for rt. Settings that go-smtp fixes at start
// (max_message_bytes, max_recipients, hostname) need a restart to change.
func NewServer(rt *Runtime, log *zap.Logger) *Server {
	s := &Server{log: log, guards: map[*guardConn]struct{}{}, rtUsers: map[*Runtime]int{}, now: time.Now, obs: nopObserver{}}
	s.idle = sync.NewCond(&s.mu)
	s.pool = delivery.NewPool(rt.Config.DownstreamMaxIdle, rt.Config.DownstreamIdle.D())
	if rt.Policy == nil {
		rt.Policy = policy.DeliverAll{}
	}
	if rt.Pipeline == nil {
		rt.Pipeline = pipeline.New()
	}
	s.rt.Store(rt)
	cfg := rt.Config
	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.HostnameOrDefault()
	s.maxMessageBytes = int64(cfg.MaxMessageBytes)
	srv.MaxMessageBytes = s.maxMessageBytes + 1 // see guardConfig.maxSize
	srv.MaxRecipients = cfg.Limits.MaxRecipients
	srv.MaxLineLength = 0 // the guard bounds command lines; content lines are bounded by the message size
	srv.ReadTimeout = 0   // the guard sets read deadlines (per command, per message)
	srv.WriteTimeout = cfg.Timeouts.Command.D()
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.ErrorLog = zapPrintf{log.Named("smtp")}
	s.smtp = srv
	return s
}

// Runtime returns the current runtime.
func (s *Server) Runtime() *Runtime { return s.rt.Load() }

// Reload replaces the runtime for new sessions. It returns the names of
// changed settings that only take effect after a restart.
func (s *Server) Reload(rt *Runtime) (needRestart []string) {
	if rt.Policy == nil {
		rt.Policy = policy.DeliverAll{}
	}
	if rt.Pipeline == nil {
		rt.Pipeline = pipeline.New()
	}
	old := s.rt.Load().Config
	c := rt.Config
	if c.Listen != old.Listen {
		needRestart = append(needRestart, "listen")
	}
	if c.MaxMessageBytes != old.MaxMessageBytes {
		needRestart = append(needRestart, "max_message_bytes")
	}
	if c.Limits.MaxRecipients != old.Limits.MaxRecipients {
		needRestart = append(needRestart, "limits.max_recipients")
	}
	if c.HostnameOrDefault() != old.HostnameOrDefault() {
		needRestart = append(needRestart, "hostname")
	}
	s.pool.SetLimits(c.DownstreamMaxIdle, c.DownstreamIdle.D())
	s.rt.Store(rt)
	return needRestart
}

// WaitRuntimeIdle returns when no session uses rt any more (after a reload,
// to stop the old runtime's background work safely).
func (s *Server) WaitRuntimeIdle(rt *Runtime) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.rtUsers[rt] > 0 {
		s.idle.Wait()
	}
}

func (s *Server) acquireRuntime() *Runtime {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.rt.Load()
	s.rtUsers[rt]++
	return rt
}

func (s *Server) releaseRuntime(rt *Runtime) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rtUsers[rt]--; s.rtUsers[rt] <= 0 {
		delete(s.rtUsers, rt)
	}
	s.idle.Broadcast()
}

// ListenAndServe listens on the configured address and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.rt.Load().Config.Listen)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve serves SMTP on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	err := s.smtp.Serve(&guardListener{Listener: ln, s: s})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Addr returns the listening address once Serve has been called.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Sessions returns the number of open client connections.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.guards)
}

// Shutdown drains: it stops accepting, tells idle clients 421 at once, lets
// clients in a transaction finish it, and closes whatever is left when ctx
// ends. A message cut off that way never got a 250, so Postfix retries it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for g := range s.guards {
		g.interruptIdle()
	}
	s.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.smtp.Close()
	}
	s.pool.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops at once.
func (s *Server) Close() error {
	err := s.smtp.Close()
	s.pool.Close()
	return err
}

// DownstreamStats returns what the downstream connection cache did so far.
func (s *Server) DownstreamStats() delivery.PoolStats { return s.pool.Stats() }

// guardListener admits connections: only allowed clients, only up to the
// session limit, none while draining. Each admitted connection is wrapped
// in a guardConn for go-smtp.
type guardListener struct {
	net.Listener
	s *Server
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g := l.s.admit(c); g != nil {
			return g, nil
		}
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) admit(c net.Conn) *guardConn {
	rt := s.rt.Load()
	cfg := rt.Config
	peer := addrOf(c.RemoteAddr())
	if !cfg.AllowedClients.Contains(peer) {
		s.log.Warn("connection refused: client not in allowed_clients", zap.Stringer("client", peer))
		refuse(c, replyAccessDenied)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		refuse(c, replyShuttingDown)
		return nil
	}
	if len(s.guards) >= cfg.Limits.MaxSessions {
		s.log.Warn("connection refused: limits.max_sessions reached",
			zap.Stringer("client", peer), zap.Int("max_sessions", cfg.Limits.MaxSessions))
		refuse(c, replyTooManySessions)
		return nil
	}
	g := newGuardConn(c, guardConfig{
		trustedXforward: cfg.TrustedForXforward().Contains(peer),
		maxLine:         int(cfg.Limits.MaxCommandLine),
		maxCommands:     cfg.Limits.MaxCommands,
		maxXforward:     cfg.Limits.MaxXforwardValueLen,
		maxSize:         s.maxMessageBytes,
		commandTimeout:  cfg.Timeouts.Command.D(),
		dataTimeout:     cfg.Timeouts.Data.D(),
		now:             s.now,
	})
	g.onClose = func() {
		s.mu.Lock()
		delete(s.guards, g)
		s.mu.Unlock()
		s.obs.SessionClosed()
	}
	s.guards[g] = struct{}{}
	s.obs.SessionOpened()
	return g
}

// refuse answers a connection that is not served (RFC 5321 §3.1 allows a
// 554 or 421 in place of the greeting) without holding up the accept loop.
func refuse(c net.Conn, r *smtp.SMTPError) {
	go func() {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte(formatReply(r)))
		c.Close()
	}()
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.newSession(c)
}

// zapPrintf adapts zap to go-smtp's Logger.
type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, v ...any) { z.l.Sugar().Warnf(format, v...) }
func (z zapPrintf) Println(v ...any)               { z.l.Sugar().Warnln(v...) }
