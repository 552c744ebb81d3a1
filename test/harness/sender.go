package harness

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// SendResult is what the sender did, from the application's point of view.
type SendResult struct {
	SpansSent   int64
	SpansFailed int64 // refused by an agent: never entered the pipeline
	// FailedTraces had at least one span refused by an agent; they are left
	// out of completeness checks and reported on their own.
	FailedTraces map[pcommon.TraceID]bool
	// FailedBy counts the failed spans by why: the gRPC status of the
	// export's last attempt, or "sender queue full" when the export queue
	// was full of exports being retried (see SendConfig.RetryFor).
	FailedBy map[string]int64
	Elapsed  time.Duration
}

// Progress is called about once a second while sending.
type Progress func(sent, failed int64, elapsed time.Duration)

// Send replays the planned traces in real time: each span goes to its
// service's agent at its planned send time, batched every 20ms per agent as
// an SDK exporter would. It stops when every span is sent or ctx ends.
// A refused export counts as failed at once.
func Send(ctx context.Context, plans []TracePlan, agentEndpoints []string, progress Progress) (SendResult, error) {
	return SendWith(ctx, plans, SendConfig{Targets: agentEndpoints, Progress: progress})
}

// SendConfig is how SendWith reaches the agents.
type SendConfig struct {
	// Targets are one gRPC dial target per agent (node): host:port, or a
	// resolver scheme's target with its builder in DialOptions.
	Targets     []string
	DialOptions []grpc.DialOption
	// RetryFor, when set, makes the sender behave as an OTLP SDK: an export
	// that failed as unavailable (or timed out) is retried for this long,
	// with backoff, and while sdkQueueSpans spans per agent wait in exports
	// (the SDK's bounded queue) further spans are dropped and counted as
	// failed. Without it a failure counts at once and the sender waits for
	// one of 8 export slots per agent.
	RetryFor time.Duration
	Progress Progress
	// Instrumented gives the spans the attributes an instrumented service's
	// carry (putInstrumentationAttributes), as the bench's replay does:
	// for measurements of what a span costs (make sizing), not for tests
	// of what arrives.
	Instrumented bool
}

// sdkQueueSpans is an OTLP SDK's export queue: the batch span processor's
// default maximum queue size (OTEL_BSP_MAX_QUEUE_SIZE), 2048 spans.
const sdkQueueSpans = 2048

// retryable are the codes the OTLP specification lets a client retry.
var retryable = map[codes.Code]bool{
	codes.Unavailable: true, codes.DeadlineExceeded: true, codes.Canceled: true,
	codes.Aborted: true, codes.OutOfRange: true, codes.DataLoss: true, codes.ResourceExhausted: true,
}

// retryRefused calls call until it succeeds, fails with a code the OTLP
// specification does not let a client retry, ctx ends or retryFor has
// passed (0: one call). Between calls it waits backoff, doubled each time
// up to maxBackoff. It returns how many times it called again, and the
// last call's error.
func retryRefused(ctx context.Context, retryFor, backoff, maxBackoff time.Duration, call func() error) (retries int64, err error) {
	deadline := time.Now().Add(retryFor)
	for err = call(); err != nil && retryable[status.Code(err)] && time.Now().Before(deadline) && sleepCtx(ctx, backoff); err = call() {
		retries++
		backoff = min(2*backoff, maxBackoff)
	}
	return retries, err
}

// sleepCtx sleeps d, or less if ctx ends first; it reports whether ctx is
// still going.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// export sends req once, or with retries for cfg.RetryFor.
func (cfg SendConfig) export(ctx context.Context, client ptraceotlp.GRPCClient, req ptraceotlp.ExportRequest) error {
	_, err := retryRefused(ctx, cfg.RetryFor, 100*time.Millisecond, 2*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := client.Export(cctx, req)
		return err
	})
	return err
}

// SendWith is Send with the agents reached as cfg says.
func SendWith(ctx context.Context, plans []TracePlan, cfg SendConfig) (SendResult, error) {
	progress := cfg.Progress
	res := SendResult{FailedTraces: map[pcommon.TraceID]bool{}, FailedBy: map[string]int64{}}
	clients := make([]ptraceotlp.GRPCClient, len(cfg.Targets))
	for i, ep := range cfg.Targets {
		opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, cfg.DialOptions...)
		conn, err := grpc.NewClient(ep, opts...)
		if err != nil {
			return res, fmt.Errorf("dial agent %s: %w", ep, err)
		}
		defer conn.Close()
		clients[i] = ptraceotlp.NewGRPCClient(conn)
	}

	queue := schedule(plans)
	for _, s := range queue {
		if s.span.Agent >= len(clients) {
			return res, fmt.Errorf("span planned for agent %d, but only %d agents given", s.span.Agent, len(clients))
		}
	}
	var sent, failed atomic.Int64
	var mu sync.Mutex
	// fail counts spans the agents never took, and their traces.
	fail := func(spans []scheduledSpan, why string) {
		failed.Add(int64(len(spans)))
		mu.Lock()
		defer mu.Unlock()
		res.FailedBy[why] += int64(len(spans))
		for _, s := range spans {
			res.FailedTraces[s.trace.ID] = true
		}
	}
	var wg sync.WaitGroup
	// A bounded number of exports in flight per agent keeps a slow agent
	// from growing an unbounded backlog in the generator; as an SDK, the
	// bound is on the spans waiting (queued[agent]).
	slots := make([]chan struct{}, len(clients))
	for i := range slots {
		slots[i] = make(chan struct{}, 8)
	}
	queued := make([]atomic.Int64, len(clients))

	base := time.Now()
	lastProgress := base
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	next := 0
	for next < len(queue) {
		select {
		case <-ctx.Done():
			wg.Wait()
			res.SpansSent, res.SpansFailed, res.Elapsed = sent.Load(), failed.Load(), time.Since(base)
			return res, ctx.Err()
		case <-tick.C:
		}
		now := time.Since(base)
		due := map[int][]scheduledSpan{}
		for next < len(queue) && queue[next].at <= now {
			s := queue[next]
			due[s.span.Agent] = append(due[s.span.Agent], s)
			next++
		}
		for agent, spans := range due {
			var release func()
			if cfg.RetryFor > 0 {
				// An SDK's export queue is bounded: while its exports are
				// retried, what does not fit is dropped.
				n := int64(len(spans))
				if queued[agent].Add(n) > sdkQueueSpans {
					queued[agent].Add(-n)
					fail(spans, "sender queue full")
					continue
				}
				release = func() { queued[agent].Add(-n) }
			} else {
				slots[agent] <- struct{}{}
				release = func() { <-slots[agent] }
			}
			wg.Add(1)
			go func(agent int, spans []scheduledSpan) {
				defer wg.Done()
				defer release()
				td := buildTraces(base, spans)
				if cfg.Instrumented {
					putInstrumentationAttributes(td)
				}
				req := ptraceotlp.NewExportRequestFromTraces(td)
				if err := cfg.export(ctx, clients[agent], req); err != nil {
					fail(spans, status.Convert(err).Code().String()+": "+status.Convert(err).Message())
					return
				}
				sent.Add(int64(len(spans)))
			}(agent, spans)
		}
		if progress != nil && time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			progress(sent.Load(), failed.Load(), now)
		}
	}
	wg.Wait()
	res.SpansSent, res.SpansFailed, res.Elapsed = sent.Load(), failed.Load(), time.Since(base)
	return res, nil
}
