package main

// The held area on the command line (quarantine ... --held).

import "context"

// heldFlag is "--held " when working on the held area, for the commands
// the CLI suggests.
func (q *quarantineCLI) heldFlag() string {
	if q.held {
		return "--held "
	}
	return ""
}

// claimNote marks an entry in a listing whose earlier release or rescan
// may have delivered it already: it waits for an administrator.
func (q *quarantineCLI) claimNote(id string) string {
	ce, ok := q.store.Claimed(context.Background(), id)
	switch {
	case !ok:
		return ""
	case ce.Uncertain != "":
		return " [may have been delivered: see show]"
	case ce.Running:
		return " [being released]"
	}
	return ""
}
