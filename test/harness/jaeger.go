package harness

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Backend is where kept traces end up: the in-test Sink or a real Jaeger.
type Backend interface {
	// SpansOf returns how many times each span of trace id was received.
	SpansOf(id pcommon.TraceID) map[pcommon.SpanID]int
}

// Jaeger is a real Jaeger v2 (cmd/jaeger, built by scripts/install-go-tool.sh)
// with in-memory storage, receiving OTLP/gRPC on loopback; traces are read
// back through its HTTP query API (a module build embeds no UI).
type Jaeger struct {
	OTLPPort, QueryPort int
	queryURL            string
	proc                *Process
}

// JaegerAt reads traces from a Jaeger that runs elsewhere, through its
// query API at queryURL (http://host:16686).
func JaegerAt(queryURL string) *Jaeger {
	return &Jaeger{queryURL: strings.TrimSuffix(queryURL, "/")}
}

// JaegerBinary builds (once, cached by version) and returns the Jaeger binary.
func JaegerBinary() (string, error) { return ToolBinary("jaeger", "jaeger") }

// jaegerConfig is Jaeger's all-in-one configuration reduced to what the
// tests use, every listener on a free loopback port.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 200000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// StartJaeger starts Jaeger with its files under dir and waits until its
// query API answers.
func StartJaeger(dir string) (*Jaeger, error) {
	bin, err := JaegerBinary()
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	j := &Jaeger{OTLPPort: ports[0], QueryPort: ports[1], queryURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, ports[1], ports[2], ports[3], j.Endpoint()), 0o644); err != nil {
		return nil, err
	}
	if j.proc, err = StartProcess(bin, ProcessSpec{
		Name: "jaeger", Args: []string{"--config", cfg}, LogDir: dir,
		HealthPort: ports[3], HealthPath: "/status",
	}); err != nil {
		return nil, err
	}
	if err := j.proc.WaitHealthy(time.Minute); err != nil {
		j.Stop()
		return nil, err
	}
	return j, nil
}

// Endpoint is Jaeger's OTLP/gRPC endpoint.
func (j *Jaeger) Endpoint() string { return net.JoinHostPort(IntakeHost, strconv.Itoa(j.OTLPPort)) }

// Stop stops Jaeger.
func (j *Jaeger) Stop() { _ = j.proc.Stop(10 * time.Second) }

// jaegerTraces is the part of /api/traces/{id}'s answer the tests read.
type jaegerTraces struct {
	Data []struct {
		Spans []struct {
			SpanID string `json:"spanID"`
			Tags   []struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			} `json:"tags"`
		} `json:"spans"`
	} `json:"data"`
}

// trace reads trace id from Jaeger's query API; a trace Jaeger does not
// have (404), or an API failure, reads as empty.
func (j *Jaeger) trace(id pcommon.TraceID) jaegerTraces {
	var t jaegerTraces
	resp, err := http.Get(j.queryURL + "/api/traces/" + hex.EncodeToString(id[:]))
	if err != nil {
		return t
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&t)
	}
	return t
}

// HasTag reports whether a span of trace id carries tag key with value
// true (for example the guard's keep attribute).
func (j *Jaeger) HasTag(id pcommon.TraceID, key string) bool {
	for _, tr := range j.trace(id).Data {
		for _, s := range tr.Spans {
			for _, tag := range s.Tags {
				if tag.Key == key && tag.Value == true {
					return true
				}
			}
		}
	}
	return false
}

// SpansOf reads trace id back from Jaeger's query API (an API failure
// reads as no spans: a lost trace for the caller's comparison).
func (j *Jaeger) SpansOf(id pcommon.TraceID) map[pcommon.SpanID]int {
	out := map[pcommon.SpanID]int{}
	for _, tr := range j.trace(id).Data {
		for _, s := range tr.Spans {
			var sid pcommon.SpanID
			hexID := strings.Repeat("0", max(0, 2*len(sid)-len(s.SpanID))) + s.SpanID
			if b, err := hex.DecodeString(hexID); err == nil && len(b) == len(sid) {
				copy(sid[:], b)
				out[sid]++
			}
		}
	}
	return out
}
