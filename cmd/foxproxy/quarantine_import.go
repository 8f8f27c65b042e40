package main

// "foxproxy quarantine import": moving a file store (quarantine.dir and its
// held area) into the database of database.url.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/quarantine"
)

const importUsage = `usage: foxproxy quarantine import [-config FILE] [-dir DIR] [-keep]
Copies the file store DIR (default quarantine.dir of -config): its
quarantine and its held area (DIR/held), into the database of database.url.
Each entry is copied in one transaction under its own ID, with its time,
its partial releases and an interrupted or uncertain release's claim, and
its files are removed only once that transaction has committed (with -keep
they stay). An entry the database has already (an earlier, interrupted run)
is skipped when its size matches, and reported when it does not; an entry
being released right now is left for a later run. Running it again is safe:
it picks up where it stopped.
Exit status: 0 every entry is in the database, 1 something was left, 2 usage error.
`

// importSummary counts what an import did.
type importSummary struct {
	Imported int // copied now
	Skipped  int // in the database already, same size
	Busy     int // a release in progress: left for a later run
	Failed   int // not copied (an error, or a different entry under the ID)
}

func (s importSummary) String() string {
	return fmt.Sprintf("imported %d, skipped %d (in the database already), failed %d, left for a later run %d (a release in progress)",
		s.Imported, s.Skipped, s.Failed, s.Busy)
}

// importOptions say how importFileStore works.
type importOptions struct {
	// Keep leaves the file entries in place after their copy committed.
	Keep bool
	// Out gets a line for each entry that was not simply imported.
	Out io.Writer
	// committed, when set, is called after an entry's copy committed and
	// before its files are removed (tests interrupt an import there).
	committed func(area, id string)
}

// quarantineImportCmd runs "foxproxy quarantine import".
func quarantineImportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("foxproxy quarantine import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage) }
	cfgPath := fs.String("config", "", "configuration file (YAML) naming the database (database.url)")
	dir := fs.String("dir", "", "the file store to import (default: quarantine.dir of -config)")
	keep := fs.Bool("keep", false, "leave the file entries in place after their copy committed")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "foxproxy quarantine import: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	cfg, ok := loadDatabaseConfig("foxproxy quarantine import", *cfgPath, ": nowhere to import to", stderr)
	if !ok {
		return exitFailure
	}
	if *dir == "" {
		*dir = cfg.Quarantine.Dir
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "foxproxy quarantine import: give -dir DIR (the configuration sets no quarantine.dir)")
		return exitUsage
	}
	src, err := quarantine.OpenExisting(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy quarantine import: %v\n", err)
		return exitFailure
	}
	db, err := pgstore.Open(cfg.Database.Store(), pgstore.Options{Host: cfg.Proxy().HostnameOrDefault()})
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy quarantine import: %v\n", err)
		return exitFailure
	}
	defer db.Close()
	sum, err := importFileStore(context.Background(), src, db, importOptions{Keep: *keep, Out: stderr})
	fmt.Fprintf(stdout, "%s -> %s: %s\n", *dir, db, sum)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy quarantine import: stopped: %v (run it again to continue)\n", err)
		return exitFailure
	}
	if sum.Failed > 0 || sum.Busy > 0 {
		return exitFailure
	}
	return exitOK
}

// importFileStore copies src's quarantine, then its held area, into db,
// entry by entry. It stops at the first error that is not an entry's own
// (the database unreachable, ctx done), returning what it did so far;
// every entry it counted as imported or skipped is in the database.
func importFileStore(ctx context.Context, src *quarantine.DirStore, db *pgstore.DB, opt importOptions) (importSummary, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	var sum importSummary
	areas := []struct {
		name string
		from quarantine.Store
		to   *pgstore.Store
	}{
		{"quarantine", src, db.Quarantine()},
		{"held", src.HeldView(), db.HeldArea()},
	}
	for _, a := range areas {
		entries, err := a.from.List(ctx)
		if err != nil {
			return sum, fmt.Errorf("%s: %w", a.from.Describe(), err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return sum, err
			}
			imp := &entryImport{area: a.name, from: a.from, to: a.to, quarantine: db.Quarantine(), opt: opt, e: e}
			if err := imp.run(ctx, &sum); err != nil {
				return sum, err
			}
		}
	}
	return sum, nil
}

// entryImport is the import of one file entry.
type entryImport struct {
	area       string
	from       quarantine.Store
	to         *pgstore.Store
	quarantine *pgstore.Store // the database's quarantine, for a held entry moved already
	opt        importOptions
	e          quarantine.Entry
}

func (m *entryImport) say(format string, args ...any) {
	fmt.Fprintf(m.opt.Out, "%s %s: %s\n", m.area, m.e.ID, fmt.Sprintf(format, args...))
}

// run imports the entry and counts the outcome. It returns an error only
// when the import as a whole cannot go on.
func (m *entryImport) run(ctx context.Context, sum *importSummary) error {
	// Our own claim on the file entry, while it is copied: no release
	// or rescan on the file store starts meanwhile. A claim that is
	// there already is either running (a release in progress: leave
	// the entry for later) or lapsed (interrupted, or it may have
	// delivered the message): that one moves with the entry.
	var carried *quarantine.ClaimedError
	own, err := m.from.Claim(ctx, m.e.ID, false)
	var ce *quarantine.ClaimedError
	switch {
	case errors.As(err, &ce) && ce.Running && ce.Uncertain == "":
		m.say("left in the directory: a release is in progress (process %d); run the import again when it has ended", ce.PID)
		sum.Busy++
		return nil
	case errors.As(err, &ce):
		carried = ce
	case errors.Is(err, quarantine.ErrNotFound):
		return nil // deleted or released meanwhile
	case err != nil:
		m.say("not imported: %v", err)
		sum.Failed++
		return nil
	}
	dropOwn := func() {
		if own != nil {
			own.Drop()
		}
	}

	if m.area == "held" {
		// A move from the held area to the quarantine that a crash
		// interrupted leaves the entry on both sides; the quarantine's
		// copy is the one that counts (see package quarantine).
		if has, err := m.quarantine.Has(ctx, m.e.ID); err != nil {
			dropOwn()
			return err
		} else if has {
			m.say("skipped: the quarantine has it (a move from the held area that was interrupted)")
			sum.Skipped++
			return m.removeFile(ctx, own, sum)
		}
	}

	msg, err := m.from.Open(ctx, m.e.ID)
	if err != nil {
		dropOwn()
		m.say("not imported: %v", err)
		sum.Failed++
		return nil
	}
	size := msg.Size()
	err = m.to.Import(ctx, m.e, msg, carried)
	msg.Close()
	switch {
	case errors.Is(err, quarantine.ErrExists):
		// An earlier run copied it (and stopped before removing the
		// files), or the IDs of two entries collide: tell them apart by
		// size.
		got, err := m.storedSize(ctx)
		if err != nil {
			dropOwn()
			return err
		}
		if got != size {
			dropOwn()
			m.say("not imported: the database has another entry under this ID (%d bytes, the file has %d); the file entry stays", got, size)
			sum.Failed++
			return nil
		}
		sum.Skipped++
		return m.removeFile(ctx, own, sum)
	case err != nil && ctx.Err() != nil:
		dropOwn()
		return ctx.Err()
	case err != nil && entryError(err):
		dropOwn()
		m.say("not imported: %v", err)
		sum.Failed++
		return nil
	case err != nil:
		dropOwn()
		return err
	}
	// Committed. Check what the database holds before the file goes.
	got, err := m.storedSize(ctx)
	if err != nil {
		dropOwn()
		sum.Imported++
		return err
	}
	if got != size {
		dropOwn()
		m.say("imported, but the database holds %d bytes of %d; the file entry stays", got, size)
		sum.Failed++
		return nil
	}
	sum.Imported++
	if m.opt.committed != nil {
		m.opt.committed(m.area, m.e.ID)
	}
	return m.removeFile(ctx, own, sum)
}

// storedSize is the size of the database's copy.
func (m *entryImport) storedSize(ctx context.Context) (int64, error) {
	msg, err := m.to.Open(ctx, m.e.ID)
	if err != nil {
		return 0, err
	}
	defer msg.Close()
	return msg.Size(), nil
}

// removeFile removes the file entry (its message, metadata and claims)
// once the database has it, unless the files are to be kept. A context
// done by now leaves the files: the next run skips the entry and removes
// them.
func (m *entryImport) removeFile(ctx context.Context, own quarantine.Claim, sum *importSummary) error {
	if m.opt.Keep || ctx.Err() != nil {
		if own != nil {
			own.Drop()
		}
		return ctx.Err()
	}
	if err := m.from.Delete(ctx, m.e.ID); err != nil && !errors.Is(err, quarantine.ErrNotFound) {
		m.say("in the database, but its files could not be removed: %v (remove %s.* by hand)", err,
			filepath.Join(m.from.Describe(), m.e.ID))
	}
	return nil
}

// entryError tells an error of one entry (its file cannot be read) from
// one of the database (no connection, no answer, a schema to migrate):
// the import goes on after the first and stops at the second.
func entryError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}
