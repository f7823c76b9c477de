package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgTx is a PostgreSQL write transaction on a connection of its own that
// spends as few round trips as it can: BEGIN is not sent on its own but
// in front of the transaction's first statement, and the writes queued
// with Defer go in front of the next statement, or with COMMIT. A
// handler's transaction (BEGIN, its inbox record, a read, a write, its
// outbox rows, COMMIT) takes four round trips instead of six. The
// pipelines are pgx batches on the connection database/sql holds.
type pgTx struct {
	*sql.Conn
	begun    bool     // BEGIN has succeeded
	deferred []queued // writes waiting for the next round trip
	broken   error    // a round trip failed before BEGIN succeeded: nothing else may run
	done     bool
}

// queued is a statement waiting to be sent, already rebound.
type queued struct {
	query string
	args  []any
}

// ErrDeferredWrite marks the failure of a write queued with Tx.Defer,
// which surfaces at the statement or commit that carried it.
var ErrDeferredWrite = errors.New("a deferred write failed")

// ExecContext sends the pending BEGIN and writes and the statement in one
// round trip, and returns the statement's result.
func (t *pgTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if t.broken != nil {
		return nil, t.broken
	}
	if t.begun && len(t.deferred) == 0 {
		return t.Conn.ExecContext(ctx, query, args...)
	}
	var n int64
	err := t.pipeline(ctx, &queued{query: query, args: args}, &n)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}

// QueryContext flushes the pending BEGIN and writes (one round trip: a
// query's rows must come through database/sql), then runs the query.
func (t *pgTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.Conn.QueryContext(ctx, query, args...)
}

// QueryRowContext is QueryContext for one row. A sql.Row cannot carry a
// failed flush. If a write failed, the transaction is aborted and the
// query fails there ("current transaction is aborted"). If BEGIN failed,
// the query is not sent (it runs under a cancelled context, so its Scan
// fails): it would run outside any transaction.
func (t *pgTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if err := t.flush(ctx); err != nil && t.broken != nil {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		ctx = cancelled
	}
	return t.Conn.QueryRowContext(ctx, query, args...)
}

// flush sends the pending BEGIN and writes, if any.
func (t *pgTx) flush(ctx context.Context) error {
	if t.broken != nil {
		return t.broken
	}
	if t.begun && len(t.deferred) == 0 {
		return nil
	}
	return t.pipeline(ctx, nil, nil)
}

// Commit sends the pending writes and COMMIT in one round trip. A
// transaction that sent nothing has nothing to commit.
func (t *pgTx) Commit() error {
	if t.done {
		return sql.ErrTxDone
	}
	if t.broken != nil {
		t.Rollback()
		return t.broken
	}
	if !t.begun && len(t.deferred) == 0 {
		t.done = true
		return t.Close()
	}
	if err := t.pipeline(context.Background(), &queued{query: "COMMIT"}, nil); err != nil {
		t.Rollback()
		return err
	}
	t.done = true
	return t.Close()
}

// Rollback rolls back unless the transaction has ended, and gives the
// connection back; one that cannot roll back is discarded.
func (t *pgTx) Rollback() error {
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	t.deferred = nil
	if !t.begun {
		return t.Close()
	}
	return rollback(t.Conn)
}

// pipeline sends BEGIN (until it has succeeded), the deferred writes and
// last (if any) as one batch, and stores last's rows affected in n. The
// first failure is returned; a deferred write's is marked
// ErrDeferredWrite. A failure after BEGIN leaves the transaction aborted,
// so nothing after it runs until the rollback.
func (t *pgTx) pipeline(ctx context.Context, last *queued, n *int64) error {
	var b pgx.Batch
	first := 0
	if !t.begun {
		b.Queue("BEGIN")
		first = 1
	}
	for _, q := range t.deferred {
		b.Queue(q.query, q.args...)
	}
	if last != nil {
		b.Queue(last.query, last.args...)
	}
	deferred := len(t.deferred)
	t.deferred = t.deferred[:0]
	err := t.Raw(func(dc any) error {
		br := dc.(*stdlib.Conn).Conn().SendBatch(ctx, &b)
		var failed error
		for i := range b.Len() {
			tag, err := br.Exec()
			switch {
			case failed != nil:
			case err != nil && i >= first && i < first+deferred:
				failed = fmt.Errorf("%w: %w", ErrDeferredWrite, err)
			case err != nil:
				failed = err
			case i < first:
				t.begun = true
			case i == b.Len()-1 && n != nil:
				*n = tag.RowsAffected()
			}
		}
		if err := br.Close(); failed == nil {
			failed = err
		}
		return failed
	})
	if err != nil && !t.begun {
		t.broken = err // its deferred writes are gone with the batch
	}
	return err
}
