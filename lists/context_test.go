package lists

import (
	"context"
	"testing"
)

// A message's stages read the snapshot its runner put into the context;
// without one they see no lists.
func TestContextCarriesTheSnapshot(t *testing.T) {
	if s := FromContext(context.Background()); s != nil {
		t.Errorf("no snapshot: got %p, want nil", s)
	}
	b := NewBuilder()
	b.AddBytes(BlockedURLs, "bu", []byte("evil.example\n"))
	set, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(NewContext(context.Background(), set))
	defer cancel()
	if got := FromContext(ctx); got != set {
		t.Errorf("derived context: got %p, want the snapshot %p", got, set)
	}
}
