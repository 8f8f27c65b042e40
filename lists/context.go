package lists

import "context"

// snapshotKey is the context key of a message's lists snapshot.
type snapshotKey struct{}

// NewContext returns a copy of ctx that carries s, the lists in force when
// a message's checks started. Whoever runs the pipeline on a message puts
// the snapshot there (Holder.Current), and every stage that consults the
// local lists (ERS, WRS, the lists stage) takes it with FromContext, so an
// update that lands mid-message does not change the message's lists.
//
// The snapshot travels in the context rather than on
// pipeline.Transaction so that the pipeline, which every stage imports,
// does not depend on a stage's data.
func NewContext(ctx context.Context, s *Set) context.Context {
	return context.WithValue(ctx, snapshotKey{}, s)
}

// FromContext returns the snapshot NewContext put into ctx, or nil (no
// lists: every lookup misses) when there is none.
func FromContext(ctx context.Context) *Set {
	s, _ := ctx.Value(snapshotKey{}).(*Set)
	return s
}
