package bustest

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// Logger returns a logger that writes through tb.Log (see LogWriter), at
// Info and above.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(tb), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// LogWriter returns a writer that passes what it is given to tb.Log, a line
// at a time. go test shows that only for a failing test (or with -v), next
// to its failure, instead of every test's log interleaved on stderr, where
// a long log buries the failure. Lines arriving after tb's cleanups began,
// when tb.Log may no longer be called, are dropped; so call LogWriter
// before registering the cleanups whose logs should still be shown.
func LogWriter(tb testing.TB) io.Writer {
	w := &logWriter{tb: tb}
	tb.Cleanup(w.stop)
	return w
}

type logWriter struct {
	mu      sync.Mutex
	tb      testing.TB
	partial []byte
	stopped bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.tb.Log(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.tb.Log(string(w.partial))
	}
	w.stopped = true
}
