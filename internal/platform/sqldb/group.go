package sqldb

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group commit (SQLite). SQLite has one writer, so write transactions from
// concurrent callers run one after another anyway, and each pays for its
// own BEGIN and COMMIT: the COMMIT writes every page the transaction
// touched to the WAL. InTx therefore queues its callers: the first caller
// to find no transaction running becomes the leader and runs everything
// queued at that moment in one transaction, each caller's function inside
// its own SAVEPOINT. A function that fails is rolled back to its savepoint
// and gets its error; the others commit together, and each caller returns
// only after that commit. A caller alone in the queue gets a plain
// transaction, so an idle system pays nothing for this.
//
// When the leader has committed it hands leadership to the first caller
// that queued meanwhile, so no caller is kept running other callers' work.

// groupTx is one caller's place in the queue.
type groupTx struct {
	ctx      context.Context
	fn       func(*Tx) error
	done     chan groupResult // one per caller: "lead" at most once, then the result
	onCommit []func()
}

type groupResult struct {
	lead     bool
	err      error
	panicked any
}

type group struct {
	mu      sync.Mutex
	queue   []*groupTx
	running bool
}

// maxGroup bounds how many callers share a transaction, and so how long
// the transaction (and the last caller in it) can take.
const maxGroup = 64

func (db *DB) inGroup(ctx context.Context, fn func(*Tx) error) error {
	me := &groupTx{ctx: ctx, fn: fn, done: make(chan groupResult, 1)}
	g := &db.group
	g.mu.Lock()
	g.queue = append(g.queue, me)
	lead := !g.running
	g.running = true
	g.mu.Unlock()
	for {
		if lead {
			db.leadGroup()
		}
		r := <-me.done
		if r.lead {
			lead = true
			continue
		}
		if r.panicked != nil {
			panic(r.panicked)
		}
		if r.err != nil {
			return r.err
		}
		for _, f := range me.onCommit {
			f()
		}
		return nil
	}
}

// leadGroup runs up to maxGroup queued callers in one transaction, sends
// each its result and passes leadership on.
func (db *DB) leadGroup() {
	g := &db.group
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	results := db.runGroup(batch)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- groupResult{lead: true}
	} else {
		g.running = false
		g.queue = nil
	}
	g.mu.Unlock()
	for i, t := range batch {
		t.done <- results[i]
	}
}

// runGroup runs batch in one transaction and returns each caller's result.
func (db *DB) runGroup(batch []*groupTx) []groupResult {
	results := make([]groupResult, len(batch))
	if len(batch) == 1 {
		t := batch[0]
		results[0].panicked = catch(func() { results[0].err = db.plainTx(t.ctx, t.fn, &t.onCommit) })
		return results
	}
	// The transaction belongs to no single caller: one caller giving up
	// must not roll back the others. Each function still runs its
	// statements with its own context.
	shared, err := db.begin(context.Background())
	if err != nil {
		for i := range results {
			results[i].err = fmt.Errorf("begin transaction: %w", err)
		}
		return results
	}
	defer shared.Rollback()
	ok := 0
	var inOrder []func()
	for i, t := range batch {
		if err := t.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		if _, err := shared.ExecContext(context.Background(), "SAVEPOINT group_tx"); err != nil {
			return failAll(results, fmt.Errorf("savepoint: %w", err))
		}
		tx := &Tx{tx: shared, db: db, now: time.Now()}
		results[i].panicked = catch(func() { results[i].err = t.fn(tx) })
		if results[i].err != nil || results[i].panicked != nil {
			if _, err := shared.ExecContext(context.Background(), "ROLLBACK TO group_tx"); err != nil {
				return failAll(results, fmt.Errorf("rollback to savepoint: %w", err))
			}
		} else {
			t.onCommit = tx.onCommit
			inOrder = append(inOrder, tx.inOrder...)
			ok++
		}
		if _, err := shared.ExecContext(context.Background(), "RELEASE group_tx"); err != nil {
			return failAll(results, fmt.Errorf("release savepoint: %w", err))
		}
	}
	if ok == 0 {
		return results
	}
	if err := shared.Commit(); err != nil {
		return failAll(results, fmt.Errorf("commit: %w", err))
	}
	// Before leadership passes on, so before the next group commits.
	for _, f := range inOrder {
		f()
	}
	return results
}

// failAll gives every caller that would have committed err instead: the
// transaction they shared did not commit.
func failAll(results []groupResult, err error) []groupResult {
	for i := range results {
		if results[i].err == nil && results[i].panicked == nil {
			results[i].err = err
		}
	}
	return results
}

// catch runs f and returns what it panicked with, if anything.
func catch(f func()) (panicked any) {
	defer func() { panicked = recover() }()
	f()
	return nil
}
