package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LockFile is the file in a data directory that the process using it
// holds locked (flock), with its pid and start time in it.
const LockFile = "LOCK"

// lockDataDir takes the data directory for this process: two processes on
// one directory would share a JetStream store and SQLite files that each
// believes it owns. The lock is an flock, so the kernel releases it when
// the holder dies, kill -9 included. The error names the holder.
func lockDataDir(dir, what string) (release func(), err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("data directory %s is in use by %s; stop it first, or pass another --data", dir, who)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "ordermesh %s (pid %d, started %s)\n", what, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// existingDir refuses a data directory that does not exist unless create
// is set, so a mistyped --data path does not quietly become a new, empty
// installation.
func existingDir(dir string, create bool) error {
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		return fmt.Errorf("--data %s is a file, not a directory", dir)
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist) && create:
		if err := os.MkdirAll(dir, 0o700); err != nil { // the owner's alone, like the files in it
			return fmt.Errorf("create data dir: %w (pass --data DIR that ordermesh may write)", err)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		return usagef("--data %s does not exist; pass --create to make it, or the directory `ordermesh run` uses", dir)
	}
	return fmt.Errorf("--data %s: %w", dir, err)
}
