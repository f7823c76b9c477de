package sqldb_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// BenchmarkInTxParallel: small write transactions from many goroutines,
// as the HTTP handlers and consumer workers make them.
//
//	go test -run '^$' -bench InTxParallel -cpu 2 ./internal/platform/sqldb
func BenchmarkInTxParallel(b *testing.B) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, notes); err != nil {
		b.Fatal(err)
	}
	var id atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO notes (id, body) VALUES (?, ?)", id.Add(1), "a note of a typical size for an order row")
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}
