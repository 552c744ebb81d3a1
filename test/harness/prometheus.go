package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Prometheus is a real Prometheus server (built from the module proxy with
// Kubernetes service discovery, see scripts/install-go-tool.sh) on a free
// loopback port, with its TSDB under the test's directory.
type Prometheus struct {
	Port int
	proc *Process
}

// StartPrometheus writes config (a whole prometheus.yml: scrape configs,
// rule files) under dir, starts Prometheus with it and waits until it is
// ready.
func StartPrometheus(dir, config string) (*Prometheus, error) {
	bin, err := ToolBinary("prometheus", "prometheus")
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	p := &Prometheus{Port: ports[0]}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	if p.proc, err = StartProcess(bin, ProcessSpec{
		Name: "prometheus", LogDir: dir, HealthPort: p.Port, HealthPath: "/-/ready",
		Args: []string{
			"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(p.Port),
			"--log.level=warn",
		},
	}); err != nil {
		return nil, err
	}
	if err := p.proc.WaitHealthy(time.Minute); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// URL is the server's base URL, as clients (prometheus-adapter) take it.
func (p *Prometheus) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.Port) }

// Stop stops the server.
func (p *Prometheus) Stop() { _ = p.proc.Stop(10 * time.Second) }

// LogTail is the end of the server's log.
func (p *Prometheus) LogTail(n int) string { return p.proc.LogTail(n) }

// Sample is one series of an instant query's result.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query evaluates an instant query now.
func (p *Prometheus) Query(expr string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: a %s, not an instant vector", expr, data.ResultType)
	}
	out := make([]Sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", expr, r.Value[1], err)
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// Alert is one alert of the server's rules, pending or firing.
type Alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// Alerts lists the alerts pending or firing now.
func (p *Prometheus) Alerts() ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", &data)
	return data.Alerts, err
}

// Target is one scrape target as the server sees it.
type Target struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// Targets lists the active scrape targets.
func (p *Prometheus) Targets() ([]Target, error) {
	var data struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	err := p.get("/api/v1/targets?state=active", &data)
	return data.ActiveTargets, err
}

// get reads a Prometheus HTTP API answer's data into out.
func (p *Prometheus) get(path string, out any) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(p.URL() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, answer.Error)
	}
	return json.Unmarshal(answer.Data, out)
}
