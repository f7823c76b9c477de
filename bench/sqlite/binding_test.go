// Package sqlitebench measures SQLite bindings side by side on the write
// ordermesh's consumers make per event (the fast-path issue's lever 3): in
// one transaction per batch, an inbox record, a one-row state change and an
// outbox row, committed in WAL mode with synchronous=NORMAL, as sqldb opens
// its files. It is a module of its own so that the bindings it compares do
// not become dependencies of ordermesh.
//
//	cd bench/sqlite && go test -ldflags=-X=github.com/ncruces/go-sqlite3/driver.driverName= \
//	    -run '^$' -bench . -benchtime 20000x -count 3
//
// (Both bindings register a database/sql driver named "sqlite3"; the flag
// turns off ncruces's registration, which this benchmark does not use.)
//
// Each result reports ns per event and CPU µs per event (user + system time
// of the whole process over the timed part, so the binding's goroutines,
// cgo and syscalls are all counted).
package sqlitebench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	mattn "github.com/mattn/go-sqlite3"
	ncruces "github.com/ncruces/go-sqlite3"
	ncrucesdriver "github.com/ncruces/go-sqlite3/driver"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

const schema = `
CREATE TABLE inbox (consumer TEXT NOT NULL, event_id TEXT NOT NULL, received_at_us INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)) WITHOUT ROWID;
CREATE INDEX inbox_received ON inbox (received_at_us);
CREATE TABLE stock (sku TEXT PRIMARY KEY, reserved INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, type TEXT NOT NULL,
    source TEXT NOT NULL, subject TEXT NOT NULL, time_us INTEGER NOT NULL, traceparent TEXT NOT NULL DEFAULT '',
    correlation_id TEXT NOT NULL DEFAULT '', causation_id TEXT NOT NULL DEFAULT '', data BLOB NOT NULL,
    sent_at_us INTEGER);
`

const (
	insertInbox  = "INSERT INTO inbox (consumer, event_id, received_at_us) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
	updateStock  = "UPDATE stock SET reserved = reserved + 1 WHERE sku = ?"
	insertOutbox = "INSERT INTO outbox (event_id, type, source, subject, time_us, traceparent, correlation_id, causation_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
	skus         = 100
)

// payload is an event's data of about the size of ordermesh's.
var payload = []byte(`{"order_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","customer_id":"cust-42","lines":[{"sku":"SKU-0001","quantity":2,"unit_price_cents":1999}],"total_cents":3998,"currency":"EUR","reservation_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","reason":""}`)

// event is what one event writes, with its values precomputed so that the
// bindings, not the benchmark, are measured.
type event struct {
	id, sku string
	now     int64
}

func events(n int) []event {
	evs := make([]event, n)
	base := time.Now().UnixMicro()
	for i := range evs {
		evs[i] = event{id: "ev-" + strconv.Itoa(i), sku: "SKU-" + strconv.Itoa(i%skus), now: base + int64(i)}
	}
	return evs
}

// writer commits batches of events in one binding.
type writer interface {
	batch(evs []event) error
	close() error
}

// pragmas are sqldb's per-connection settings (sqldb.openSQLite).
var pragmas = []string{
	"PRAGMA journal_mode = WAL",
	"PRAGMA synchronous = NORMAL",
	"PRAGMA busy_timeout = 10000",
	"PRAGMA foreign_keys = on",
	"PRAGMA mmap_size = 268435456",
}

func seed(exec func(string) error) error { return seedScript(exec, exec) }

// seedScript sets the pragmas with exec and creates the schema with script.
func seedScript(exec, script func(string) error) error {
	for _, p := range pragmas {
		if err := exec(p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := script(schema); err != nil {
		return err
	}
	for i := range skus {
		if err := exec(fmt.Sprintf("INSERT INTO stock VALUES ('SKU-%d', 0)", i)); err != nil {
			return err
		}
	}
	return nil
}

// sqlWriter is database/sql as ordermesh uses it: one write connection, a
// transaction per batch under a cancellable context, unprepared statements
// (the driver caches them).
type sqlWriter struct {
	db     *sql.DB
	ctx    context.Context
	cancel context.CancelFunc
}

func openSQL(db *sql.DB, err error) (*sqlWriter, error) { return openSQLCancel(true, db, err) }

// openSQLCancel is openSQL with the transactions' context cancellable or
// not: database/sql and mattn/go-sqlite3 watch a cancellable one from
// another goroutine (one per transaction, one per statement).
func openSQLCancel(cancellable bool, db *sql.DB, err error) (*sqlWriter, error) {
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if err := seed(func(q string) error { _, err := db.Exec(q); return err }); err != nil {
		db.Close()
		return nil, err
	}
	ctx, cancel := context.Background(), func() {}
	if cancellable {
		ctx, cancel = context.WithCancel(ctx)
	}
	return &sqlWriter{db: db, ctx: ctx, cancel: cancel}, nil
}

func (w *sqlWriter) batch(evs []event) error {
	tx, err := w.db.BeginTx(w.ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, ev := range evs {
		if _, err := tx.ExecContext(w.ctx, insertInbox, "inventory", ev.id, ev.now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(w.ctx, updateStock, ev.sku); err != nil {
			return err
		}
		if _, err := tx.ExecContext(w.ctx, insertOutbox, ev.id, "stock.reserved", "inventory", ev.id, ev.now, "", ev.id, ev.id, payload); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (w *sqlWriter) close() error { w.cancel(); return w.db.Close() }

// sqlConnWriter is database/sql with the one write connection held as a
// sql.Conn and the transaction run as statements on it (BEGIN IMMEDIATE,
// COMMIT), under a context that cannot be cancelled: no sql.Tx.
type sqlConnWriter struct {
	db   *sql.DB
	conn *sql.Conn
}

func openSQLConn(db *sql.DB, err error) (*sqlConnWriter, error) {
	w, err := openSQLCancel(false, db, err)
	if err != nil {
		return nil, err
	}
	conn, err := w.db.Conn(context.Background())
	if err != nil {
		w.close()
		return nil, err
	}
	return &sqlConnWriter{db: w.db, conn: conn}, nil
}

func (w *sqlConnWriter) batch(evs []event) error {
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	for _, ev := range evs {
		if _, err := w.conn.ExecContext(ctx, insertInbox, "inventory", ev.id, ev.now); err != nil {
			return w.rollback(err)
		}
		if _, err := w.conn.ExecContext(ctx, updateStock, ev.sku); err != nil {
			return w.rollback(err)
		}
		if _, err := w.conn.ExecContext(ctx, insertOutbox, ev.id, "stock.reserved", "inventory", ev.id, ev.now, "", ev.id, ev.id, payload); err != nil {
			return w.rollback(err)
		}
	}
	_, err := w.conn.ExecContext(ctx, "COMMIT")
	return err
}

func (w *sqlConnWriter) rollback(err error) error {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
	return err
}

func (w *sqlConnWriter) close() error { w.conn.Close(); return w.db.Close() }

// mattnConn is mattn/go-sqlite3 without database/sql: statements prepared
// once and held by the connection, no context (so no goroutine per statement).
type mattnConn struct {
	conn                 *mattn.SQLiteConn
	begin, commit        driver.Stmt
	inbox, stock, outbox driver.Stmt
}

func openMattnConn(path string) (*mattnConn, error) {
	c, err := (&mattn.SQLiteDriver{}).Open("file:" + path + "?_txlock=immediate")
	if err != nil {
		return nil, err
	}
	conn := c.(*mattn.SQLiteConn)
	if err := seed(func(q string) error { _, err := conn.Exec(q, nil); return err }); err != nil {
		conn.Close()
		return nil, err
	}
	w := &mattnConn{conn: conn}
	for _, s := range []struct {
		dst *driver.Stmt
		q   string
	}{{&w.begin, "BEGIN IMMEDIATE"}, {&w.commit, "COMMIT"}, {&w.inbox, insertInbox}, {&w.stock, updateStock}, {&w.outbox, insertOutbox}} {
		if *s.dst, err = conn.Prepare(s.q); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *mattnConn) batch(evs []event) error {
	if _, err := w.begin.Exec(nil); err != nil { //nolint:staticcheck // the driver-level API is the point
		return err
	}
	for _, ev := range evs {
		if _, err := w.inbox.Exec([]driver.Value{"inventory", ev.id, ev.now}); err != nil { //nolint:staticcheck
			return w.rollback(err)
		}
		if _, err := w.stock.Exec([]driver.Value{ev.sku}); err != nil { //nolint:staticcheck
			return w.rollback(err)
		}
		if _, err := w.outbox.Exec([]driver.Value{ev.id, "stock.reserved", "inventory", ev.id, ev.now, "", ev.id, ev.id, payload}); err != nil { //nolint:staticcheck
			return w.rollback(err)
		}
	}
	_, err := w.commit.Exec(nil) //nolint:staticcheck
	return err
}

func (w *mattnConn) rollback(err error) error {
	_, _ = w.conn.Exec("ROLLBACK", nil)
	return err
}

func (w *mattnConn) close() error { return w.conn.Close() }

// ncrucesConn is ncruces/go-sqlite3's own API (SQLite compiled to Wasm and
// translated to Go: no cgo), statements prepared once.
type ncrucesConn struct {
	conn                 *ncruces.Conn
	inbox, stock, outbox *ncruces.Stmt
}

func openNcrucesConn(path string) (*ncrucesConn, error) {
	conn, err := ncruces.Open(path)
	if err != nil {
		return nil, err
	}
	if err := seed(conn.Exec); err != nil {
		conn.Close()
		return nil, err
	}
	w := &ncrucesConn{conn: conn}
	for _, s := range []struct {
		dst **ncruces.Stmt
		q   string
	}{{&w.inbox, insertInbox}, {&w.stock, updateStock}, {&w.outbox, insertOutbox}} {
		if *s.dst, _, err = conn.Prepare(s.q); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *ncrucesConn) batch(evs []event) error {
	if err := w.conn.Exec("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	for _, ev := range evs {
		_ = w.inbox.BindText(1, "inventory")
		_ = w.inbox.BindText(2, ev.id)
		_ = w.inbox.BindInt64(3, ev.now)
		if err := w.inbox.Exec(); err != nil {
			return w.rollback(err)
		}
		_ = w.stock.BindText(1, ev.sku)
		if err := w.stock.Exec(); err != nil {
			return w.rollback(err)
		}
		for i, v := range []string{ev.id, "stock.reserved", "inventory", ev.id} {
			_ = w.outbox.BindText(i+1, v)
		}
		_ = w.outbox.BindInt64(5, ev.now)
		_ = w.outbox.BindText(6, "")
		_ = w.outbox.BindText(7, ev.id)
		_ = w.outbox.BindText(8, ev.id)
		_ = w.outbox.BindBlob(9, payload)
		if err := w.outbox.Exec(); err != nil {
			return w.rollback(err)
		}
	}
	return w.conn.Exec("COMMIT")
}

func (w *ncrucesConn) rollback(err error) error {
	_ = w.conn.Exec("ROLLBACK")
	return err
}

func (w *ncrucesConn) close() error { return w.conn.Close() }

// zombiezenConn is zombiezen.com/go/sqlite (modernc.org/sqlite: SQLite
// translated from C to Go, no cgo), statements cached by the connection.
type zombiezenConn struct{ conn *sqlite.Conn }

func openZombiezen(path string) (*zombiezenConn, error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite, sqlite.OpenCreate, sqlite.OpenWAL)
	if err != nil {
		return nil, err
	}
	exec := func(q string) error { return sqlitex.ExecuteTransient(conn, q, nil) }
	if err := seedScript(exec, func(q string) error { return sqlitex.ExecuteScript(conn, q, nil) }); err != nil {
		conn.Close()
		return nil, err
	}
	return &zombiezenConn{conn: conn}, nil
}

func (w *zombiezenConn) batch(evs []event) (err error) {
	if err := sqlitex.ExecuteTransient(w.conn, "BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = sqlitex.ExecuteTransient(w.conn, "ROLLBACK", nil)
		}
	}()
	for _, ev := range evs {
		s := w.conn.Prep(insertInbox)
		s.BindText(1, "inventory")
		s.BindText(2, ev.id)
		s.BindInt64(3, ev.now)
		if err := step(s); err != nil {
			return err
		}
		s = w.conn.Prep(updateStock)
		s.BindText(1, ev.sku)
		if err := step(s); err != nil {
			return err
		}
		s = w.conn.Prep(insertOutbox)
		for i, v := range []string{ev.id, "stock.reserved", "inventory", ev.id} {
			s.BindText(i+1, v)
		}
		s.BindInt64(5, ev.now)
		s.BindText(6, "")
		s.BindText(7, ev.id)
		s.BindText(8, ev.id)
		s.BindBytes(9, payload)
		if err := step(s); err != nil {
			return err
		}
	}
	return sqlitex.ExecuteTransient(w.conn, "COMMIT", nil)
}

func step(s *sqlite.Stmt) error {
	if _, err := s.Step(); err != nil {
		s.Reset()
		return err
	}
	return s.Reset()
}

func (w *zombiezenConn) close() error { return w.conn.Close() }

// bindings are the writers compared; each opens a fresh file.
var bindings = []struct {
	name string
	open func(path string) (writer, error)
}{
	{"mattn-database-sql", func(p string) (writer, error) { // what sqldb does today
		return openSQL(sql.Open("sqlite3", "file:"+p+"?_txlock=immediate&_stmt_cache_size=128"))
	}},
	{"mattn-database-sql-exclusive", func(p string) (writer, error) { // locking_mode=EXCLUSIVE: no fcntl locks, no shared WAL index
		return openSQL(sql.Open("sqlite3", "file:"+p+"?_txlock=immediate&_stmt_cache_size=128&_locking_mode=EXCLUSIVE"))
	}},
	{"mattn-database-sql-uncancellable", func(p string) (writer, error) {
		db, err := sql.Open("sqlite3", "file:"+p+"?_txlock=immediate&_stmt_cache_size=128")
		return openSQLCancel(false, db, err)
	}},
	{"mattn-database-sql-conn", func(p string) (writer, error) {
		return openSQLConn(sql.Open("sqlite3", "file:"+p+"?_stmt_cache_size=128"))
	}},
	{"mattn-prepared-conn", func(p string) (writer, error) { return openMattnConn(p) }},
	{"ncruces-database-sql", func(p string) (writer, error) {
		return openSQL(ncrucesdriver.Open("file:" + p + "?_txlock=immediate"))
	}},
	{"ncruces-prepared-conn", func(p string) (writer, error) { return openNcrucesConn(p) }},
	{"zombiezen-prepared-conn", func(p string) (writer, error) { return openZombiezen(p) }},
}

// BenchmarkInboxIndex is the fast-path issue's "fewer pages per
// transaction": the same write through sqldb's way (a held connection,
// BEGIN … COMMIT) with and without the inbox's second index, on
// received_at_us, which only the retention purge reads.
func BenchmarkInboxIndex(b *testing.B) {
	for _, size := range []int{1, 8} {
		for _, index := range []bool{true, false} {
			b.Run(fmt.Sprintf("batch=%d/received-index=%v", size, index), func(b *testing.B) {
				w, err := openSQLConn(sql.Open("sqlite3", "file:"+filepath.Join(b.TempDir(), "bench.db")+"?_stmt_cache_size=128"))
				if err != nil {
					b.Fatal(err)
				}
				defer w.close()
				if !index {
					if _, err := w.conn.ExecContext(context.Background(), "DROP INDEX inbox_received"); err != nil {
						b.Fatal(err)
					}
				}
				run(b, w, size)
			})
		}
	}
}

func BenchmarkBinding(b *testing.B) {
	for _, size := range []int{1, 8, 64} {
		for _, bd := range bindings {
			b.Run(fmt.Sprintf("batch=%d/%s", size, bd.name), func(b *testing.B) {
				w, err := bd.open(filepath.Join(b.TempDir(), "bench.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer w.close()
				run(b, w, size)
			})
		}
	}
}

// run writes b.N events in batches of size and reports CPU per event.
func run(b *testing.B, w writer, size int) {
	evs := events(b.N)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < len(evs); i += size {
		if err := w.batch(evs[i:min(i+size, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
