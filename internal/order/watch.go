package order

import "sync"

// changes wakes the requests waiting for an order to change. It is fed by
// the broker (every event about an order wakes that order's waiters, on
// every instance), so a request on any instance learns of a change made by
// any other; waiters then re-read the order from the database.
type changes struct {
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
}

func newChanges() *changes {
	return &changes{waiters: map[string]map[chan struct{}]struct{}{}}
}

// watch returns a channel that is closed at the next event about id, and a
// function to stop watching.
func (c *changes) watch(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	if c.waiters[id] == nil {
		c.waiters[id] = map[chan struct{}]struct{}{}
	}
	c.waiters[id][ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if ws := c.waiters[id]; ws != nil {
			if _, ok := ws[ch]; ok {
				delete(ws, ch)
				close(ch)
			}
			if len(ws) == 0 {
				delete(c.waiters, id)
			}
		}
	}
}

// notify wakes everyone watching id.
func (c *changes) notify(id string) {
	c.mu.Lock()
	ws := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	for ch := range ws {
		close(ch)
	}
}
