package console

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestHashAndVerify(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if err := CheckHash(h); err != nil {
		t.Fatal(err)
	}
	if !VerifyPassword(h, "s3cret") || VerifyPassword(h, "s3creT") || VerifyPassword(h, "") {
		t.Fatal("verify")
	}
	h2, _ := HashPassword("s3cret")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if _, err := HashPassword(""); err == nil {
		t.Fatal("empty password hashed")
	}
	users := testUsers(t)
	if !VerifyPassword(users[1].PasswordHash, viewerPassword) || VerifyPassword(users[1].PasswordHash, "x") {
		t.Fatal("bcrypt verify")
	}
}

func TestCheckHashRefusesBadHashes(t *testing.T) {
	for _, h := range []string{"", "plaintext", "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 4 GiB per login
		"$argon2id$v=19$m=65536,t=3$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=65536,t=3,p=4$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$2b$10$tooshort"} {
		if CheckHash(h) == nil {
			t.Errorf("CheckHash(%q) accepted it", h)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	users := testUsers(t)
	good := Config{Users: users, SessionIdle: Duration(time.Minute), SessionMax: Duration(time.Hour)}
	if ps := good.Validate(); len(ps) != 0 {
		t.Fatalf("good config: %v", ps)
	}
	bad := Config{Users: []User{users[0], {Name: "alice", Role: "root", PasswordHash: "x"}, {Name: "a b", Role: Viewer, PasswordHash: users[1].PasswordHash}},
		SessionIdle: Duration(2 * time.Hour), SessionMax: Duration(time.Hour)}
	got := map[string]bool{}
	for _, p := range bad.Validate() {
		got[p.Key] = true
	}
	for _, k := range []string{"users[1].name", "users[1].role", "users[1].password_hash", "users[2].name", "session_idle"} {
		if !got[k] {
			t.Errorf("no problem reported for %s (got %v)", k, got)
		}
	}
}

func TestSessionsAreBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	s := newSessions(10, time.Hour, 2*time.Hour, clock.now)
	first := s.create("a", Viewer)
	for i := 0; i < 25; i++ {
		clock.advance(time.Second)
		s.create("a", Viewer)
	}
	if n := s.len(); n != 10 {
		t.Fatalf("%d sessions, bound 10", n)
	}
	if _, ok := s.get(first.token); ok {
		t.Fatal("the least recently used session survived")
	}
}

func TestThrottleMapIsBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	th := newThrottle(100, 3, time.Second, clock.now)
	for i := 0; i < 1000; i++ {
		th.fail(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune(i)))
	}
	if n := len(th.m); n > 100 {
		t.Fatalf("%d addresses kept, bound 100", n)
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	for in, want := range map[string]time.Duration{"30m": 30 * time.Minute, "12h": 12 * time.Hour, "2d": 48 * time.Hour} {
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("%s: %v %v", in, d.D(), err)
		}
	}
	if d.UnmarshalText([]byte("soon")) == nil {
		t.Error("soon accepted")
	}
}

func TestClipName(t *testing.T) {
	if got := clipName("alice"); got != "alice" {
		t.Errorf("short name changed: %q", got)
	}
	long := strings.Repeat("é", 100) // 200 bytes: the cut falls inside a rune
	got := clipName(long)
	if len(got) > maxNameBytes+len("…") || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("clipName(200 bytes) = %q (%d bytes)", got, len(got))
	}
}
