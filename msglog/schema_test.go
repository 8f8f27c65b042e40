package msglog

import (
	"context"
	"time"

	"github.com/foxproxy/foxproxy/pgstore"
)

// ensureSchema gives the database at url the message log's schema as the
// daemon does, by pgstore's migrations (0002_message_log.sql is the table),
// and creates the partitions of today and the next two days on db.
func ensureSchema(url string, db DB) error {
	ctx := context.Background()
	store, err := pgstore.Open(pgstore.Config{URL: url}, pgstore.Options{Host: "msglog-test", Migrate: true})
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		return err
	}
	return EnsurePartitions(ctx, db, upcomingDays(time.Now())...)
}
