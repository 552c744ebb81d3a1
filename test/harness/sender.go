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

// export sends req once, or with retries for cfg.RetryFor.
func (cfg SendConfig) export(ctx context.Context, client ptraceotlp.GRPCClient, req ptraceotlp.ExportRequest) error {
	deadline := time.Now().Add(cfg.RetryFor)
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.Export(cctx, req)
		cancel()
		if err == nil || cfg.RetryFor == 0 || !retryable[status.Code(err)] || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
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
			if cfg.RetryFor > 0 {
				// An SDK's export queue is bounded: while its exports are
				// retried, what does not fit is dropped.
				if queued[agent].Add(int64(len(spans))) > sdkQueueSpans {
					queued[agent].Add(-int64(len(spans)))
					fail(spans, "sender queue full")
					continue
				}
			} else {
				slots[agent] <- struct{}{}
			}
			wg.Add(1)
			go func(agent int, spans []scheduledSpan) {
				defer wg.Done()
				defer func() {
					if cfg.RetryFor > 0 {
						queued[agent].Add(-int64(len(spans)))
					} else {
						<-slots[agent]
					}
				}()
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
