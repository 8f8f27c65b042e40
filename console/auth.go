package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters of new hashes: RFC 9106 §4's second recommended
// option scaled to a login, not a disk key (19 MiB, 2 passes, as OWASP's
// password storage guidance gives it). A hash keeps its own parameters,
// so raising these later does not invalidate old hashes.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
	// maxPasswordBytes bounds what a login makes us hash.
	maxPasswordBytes = 1024
	// Bounds on a stored hash's parameters, so a configured hash cannot
	// make one login take a gigabyte or a minute.
	maxArgonMemoryKiB = 1 << 20
	maxArgonTime      = 20
)

// HashPassword returns an argon2id hash of password in the PHC string
// format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("the password is empty")
	}
	if len(password) > maxPasswordBytes {
		return "", fmt.Errorf("the password is longer than %d bytes", maxPasswordBytes)
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

type argonHash struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

func parseArgon2id(h string) (argonHash, error) {
	parts := strings.Split(h, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[1] != "argon2id" {
		return argonHash{}, errors.New("not an argon2id hash ($argon2id$v=19$m=...,t=...,p=...$salt$hash)")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return argonHash{}, fmt.Errorf("argon2id version %q is not v=%d", parts[2], argon2.Version)
	}
	var a argonHash
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return argonHash{}, fmt.Errorf("argon2id parameter %q is not a number", kv)
		}
		switch k {
		case "m":
			a.memory = uint32(n)
		case "t":
			a.time = uint32(n)
		case "p":
			if n > 255 {
				return argonHash{}, fmt.Errorf("argon2id parallelism %d is more than 255", n)
			}
			a.threads = uint8(n)
		default:
			return argonHash{}, fmt.Errorf("unknown argon2id parameter %q", k)
		}
	}
	switch {
	case a.memory < 8 || a.memory > maxArgonMemoryKiB:
		return argonHash{}, fmt.Errorf("argon2id memory m=%d is not between 8 and %d KiB", a.memory, maxArgonMemoryKiB)
	case a.time < 1 || a.time > maxArgonTime:
		return argonHash{}, fmt.Errorf("argon2id passes t=%d is not between 1 and %d", a.time, maxArgonTime)
	case a.threads < 1:
		return argonHash{}, errors.New("argon2id parallelism p must be at least 1")
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return argonHash{}, errors.New("argon2id salt is not base64 of at least 8 bytes")
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.key) < 16 || len(a.key) > 64 {
		return argonHash{}, errors.New("argon2id hash is not base64 of 16 to 64 bytes")
	}
	return a, nil
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

// CheckHash reports whether h is a password hash the console can verify.
func CheckHash(h string) error {
	switch {
	case h == "":
		return errors.New("must be set")
	case isBcrypt(h):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil {
			return fmt.Errorf("not a valid bcrypt hash: %v", err)
		}
		if cost > 16 {
			return fmt.Errorf("bcrypt cost %d is more than 16: every login would take seconds", cost)
		}
		return nil
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon2id(h)
		return err
	}
	return errors.New("not an argon2id or bcrypt hash")
}

// VerifyPassword reports whether password matches hash, in time that does
// not depend on where they differ.
func VerifyPassword(hash, password string) bool {
	if len(password) > maxPasswordBytes {
		return false
	}
	if isBcrypt(hash) {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	a, err := parseArgon2id(hash)
	if err != nil {
		return false
	}
	key := argon2.IDKey([]byte(password), a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(key, a.key) == 1
}

// dummyHash is verified for an unknown account name, so a login for a
// name that does not exist takes as long as one with a wrong password. It
// is made on the first such login, not at start: an argon2id hash takes
// its 19 MiB and 40 ms, which a foxproxy without console accounts (and
// every command line) should not pay.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("no such account")
	return h
})

// session is one login.
type session struct {
	token    string
	user     string
	role     Role
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// sessions are kept in memory: a restart logs everybody out, which is
// the safe direction. The number is bounded; when full, the session used
// least recently goes.
type sessions struct {
	mu        sync.Mutex
	m         map[string]*session
	max       int
	idle, abs time.Duration
	now       func() time.Time
}

func newSessions(max int, idle, abs time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, max: max, idle: idle, abs: abs, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(user string, role Role) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		var oldest *session
		for _, x := range s.m {
			if s.expired(x, now) {
				delete(s.m, x.token)
				continue
			}
			if oldest == nil || x.lastSeen.Before(oldest.lastSeen) {
				oldest = x
			}
		}
		if len(s.m) >= s.max && oldest != nil {
			delete(s.m, oldest.token)
		}
	}
	ss := &session{token: randomToken(), user: user, role: role, csrf: randomToken(), created: now, lastSeen: now}
	s.m[ss.token] = ss
	c := *ss
	return &c
}

func (s *sessions) expired(x *session, now time.Time) bool {
	return now.Sub(x.lastSeen) >= s.idle || now.Sub(x.created) >= s.abs
}

// get returns a copy of the session for token and marks it used.
func (s *sessions) get(token string) (*session, bool) {
	if token == "" {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[token]
	if !ok {
		return nil, false
	}
	now := s.now()
	if s.expired(x, now) {
		delete(s.m, token)
		return nil, false
	}
	x.lastSeen = now
	c := *x
	return &c, true
}

func (s *sessions) remove(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, token)
}

func (s *sessions) setTimeouts(idle, abs time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idle, s.abs = idle, abs
}

// maxAge is the absolute timeout, for the cookie's Max-Age.
func (s *sessions) maxAge() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abs
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// throttle limits failed logins per client address: a token bucket each,
// a failure takes a token, and a client with none left is refused before
// its password is even checked. The map is bounded: when full, addresses
// whose buckets have refilled are forgotten, and if none has, the least
// recently seen one.
type throttle struct {
	mu     sync.Mutex
	m      map[string]*bucket
	max    int
	burst  float64
	refill time.Duration // one token per refill
	now    func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newThrottle(max, burst int, refill time.Duration, now func() time.Time) *throttle {
	return &throttle{m: map[string]*bucket{}, max: max, burst: float64(burst), refill: refill, now: now}
}

func (t *throttle) level(b *bucket, now time.Time) float64 {
	return min(t.burst, b.tokens+float64(now.Sub(b.at))/float64(t.refill))
}

// allow reports whether addr may try a password now, and if not, when
// it may again.
func (t *throttle) allow(addr string) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.m[addr]
	if !ok {
		return true, 0
	}
	now := t.now()
	if l := t.level(b, now); l < 1 {
		return false, time.Duration((1 - l) * float64(t.refill))
	}
	return true, 0
}

// fail takes a token from addr's bucket.
func (t *throttle) fail(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	b, ok := t.m[addr]
	if !ok {
		if len(t.m) >= t.max {
			t.evict(now)
		}
		b = &bucket{tokens: t.burst, at: now}
		t.m[addr] = b
	}
	b.tokens = max(0, t.level(b, now)-1)
	b.at = now
}

func (t *throttle) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for a, b := range t.m {
		if t.level(b, now) >= t.burst {
			delete(t.m, a)
			continue
		}
		if oldest == "" || b.at.Before(oldestAt) {
			oldest, oldestAt = a, b.at
		}
	}
	if len(t.m) >= t.max && oldest != "" {
		delete(t.m, oldest)
	}
}
