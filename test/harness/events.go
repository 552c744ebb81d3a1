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
