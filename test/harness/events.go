package harness

import (
	"context"
	"sync"
	"time"
)

// RunAt runs each event at its offset from now, in its own goroutine,
// unless ctx ends first. The returned wait blocks until every event has
// run or been cancelled.
func RunAt(ctx context.Context, events map[time.Duration]func()) (wait func()) {
	var wg sync.WaitGroup
	for at, ev := range events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(at):
				ev()
			case <-ctx.Done():
			}
		}()
	}
	return wg.Wait
}

// Poll checks cond every interval until it holds or timeout passes, and
// returns whether it held and the state cond last described (for the
// caller's failure message).
func Poll(timeout, interval time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return true, state
		}
		last = state
		time.Sleep(interval)
	}
	return false, last
}
