package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// tierPKI is one test's certificates between the tiers: a CA, and a
// Secret-shaped directory each for the gateways (one certificate for the
// headless Service's name) and the agents.
type tierPKI struct {
	ca                     *harness.CA
	gatewayDir, agentDir   string
	gatewayLeaf, agentLeaf harness.Leaf
}

func newTierPKI(t *testing.T, notAfter time.Time) *tierPKI {
	t.Helper()
	ca, err := harness.NewCA("tailgate-ca")
	require.NoError(t, err)
	p := &tierPKI{ca: ca, gatewayDir: filepath.Join(t.TempDir(), "gateway-tls"), agentDir: filepath.Join(t.TempDir(), "agent-tls")}
	p.rotate(t, notAfter)
	return p
}

// rotate issues both tiers new certificates of the same CA, valid until
// notAfter, and swaps them in as the kubelet swaps a Secret's files.
func (p *tierPKI) rotate(t *testing.T, notAfter time.Time) {
	t.Helper()
	var err error
	p.gatewayLeaf, err = p.ca.Issue("tailgate-gateway", notAfter, harness.GatewayServerName)
	require.NoError(t, err)
	p.agentLeaf, err = p.ca.Issue("tailgate-agent", notAfter)
	require.NoError(t, err)
	require.NoError(t, harness.WriteSecretDir(p.gatewayDir, p.ca.SecretData(p.gatewayLeaf)))
	require.NoError(t, harness.WriteSecretDir(p.agentDir, p.ca.SecretData(p.agentLeaf)))
}

// topologyConfig is an e2e topology with mutual TLS between the tiers,
// certificates re-read every reload.
func (p *tierPKI) topologyConfig(agents, gateways int, reload time.Duration) harness.TopologyConfig {
	return harness.TopologyConfig{
		Agents: agents, Gateways: gateways,
		GatewayOverlays: []string{harness.MTLSOverlay("gateway")}, GatewaySet: withGatewaySet(harness.GatewayMTLSSet(p.gatewayDir, reload)...),
		AgentOverlays: []string{harness.MTLSOverlay("agent")}, AgentSet: harness.AgentMTLSSet(p.agentDir, reload),
	}
}

// TestMTLSAdmitsOnlyTheAgents: with mutual TLS on, traffic through the
// agents arrives whole, while a client straight at a gateway with no
// certificate, one of another CA, an expired one of the right CA, or no
// TLS at all, is refused: none of its spans reaches the backend, the
// gateway logs the reason and counts it. The OTLP/HTTP port is closed.
func TestMTLSAdmitsOnlyTheAgents(t *testing.T) {
	p := newTierPKI(t, time.Now().Add(24*time.Hour))
	topo := startTopology(t, p.topologyConfig(2, 2, time.Minute))

	plans := plan(t, 600, 70)
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed, "agents refused spans")

	otherCA, err := harness.NewCA("other-ca")
	require.NoError(t, err)
	intruder, err := otherCA.Issue("intruder", time.Now().Add(time.Hour))
	require.NoError(t, err)
	expired, err := p.ca.Issue("expired-agent", time.Now().Add(-time.Minute))
	require.NoError(t, err)
	tlsCreds := func(leaf *harness.Leaf) credentials.TransportCredentials {
		cfg, err := harness.ClientTLS(p.ca, leaf, harness.GatewayServerName)
		require.NoError(t, err)
		return credentials.NewTLS(cfg)
	}
	gw := topo.Gateways[0]
	clients := []struct {
		reason string
		creds  credentials.TransportCredentials
	}{
		{"no_certificate", tlsCreds(nil)},
		{"unknown_authority", tlsCreds(&intruder)},
		{"expired", tlsCreds(&expired)},
		{"not_tls", insecure.NewCredentials()},
	}
	var forged []pcommon.TraceID
	for _, c := range clients {
		id, err := harness.ExportForgedError(gw.OTLPEndpoint(), c.creds)
		assert.Error(t, err, "%s: the gateway took the export", c.reason)
		forged = append(forged, id)
	}
	_, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", gw.Ports.OTLPHTTP), time.Second)
	assert.Error(t, err, "the OTLP/HTTP port is closed")

	settle(t, topo, 3*time.Second, 2*time.Minute)
	ev := harness.Evaluate(plans, sent, topo.Sink)
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %5d complete %5d partial %d lost %5d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	assertKeptWhole(t, ev)
	for _, id := range forged {
		assert.Empty(t, topo.Sink.SpansOf(id), "a refused client's span reached the backend")
	}

	counters := topo.Counters()
	t.Logf("handshakes: accepted %.0f, refused %v", counters.HandshakesAccepted, counters.HandshakesRefused)
	assert.Positive(t, counters.HandshakesAccepted, "the agents' handshakes")
	log := gw.Proc.LogTail(400)
	for _, c := range clients {
		assert.Positive(t, counters.HandshakesRefused[c.reason], "refusals counted as %s", c.reason)
		assert.Contains(t, log, `"reason": "`+c.reason+`"`, "the gateway's log names %s", c.reason)
	}
	assert.Contains(t, log, `"client_certificate_subject": "CN=intruder"`)
	assert.Contains(t, log, `"client_certificate_subject": "CN=expired-agent"`)
	for _, reason := range []string{"client_rejected_server", "bad_certificate", "aborted", "other"} {
		assert.Zero(t, counters.HandshakesRefused[reason], "no agent was refused (%s)", reason)
	}
}

// TestCertificateRotationUnderTraffic rotates the certificates of running
// agents and gateways while traces flow. The first certificates expire 25s
// into the run, the new ones are swapped in at 8s, and gateways replace
// every connection each 3s: after 25s every new handshake needs the new
// certificates on both sides, so an agent or gateway that had not re-read
// its files would be refused (expired) and lose spans. Asserted: every
// interesting trace arrives whole, the agents lost nothing, no handshake
// was refused, and each gateway, never restarted, now serves its new
// certificate.
func TestCertificateRotationUnderTraffic(t *testing.T) {
	start := time.Now()
	p := newTierPKI(t, start.Add(25*time.Second))
	cfg := p.topologyConfig(2, 2, 2*time.Second)
	cfg.GatewaySet = append(cfg.GatewaySet, "receivers::otlp::protocols::grpc::keepalive::server_parameters::max_connection_age=3s")
	topo := startTopology(t, cfg)
	oldSerial := p.gatewayLeaf.Cert.SerialNumber

	gen := traffic(2400)
	gen.Seed += 71
	gen.Rate = 60 // 40 s of traffic, well past the first certificates' expiry
	plans, err := harness.Plan(gen)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wait := harness.RunAt(ctx, map[time.Duration]func(){
		8*time.Second - time.Since(start): func() { p.rotate(t, time.Now().Add(24*time.Hour)) },
	})
	sent, err := harness.Send(ctx, plans, topo.AgentEndpoints(), nil)
	require.NoError(t, err)
	wait()
	require.Greater(t, time.Since(start), 30*time.Second, "traffic outlived the first certificates")
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	settle(t, topo, 3*time.Second, 2*time.Minute)

	ev := harness.Evaluate(plans, sent, topo.Sink)
	for _, k := range harness.Kinds {
		o := ev.ByKind[k]
		t.Logf("%-6s sent %5d complete %5d partial %d lost %5d", k, o.Sent, o.Complete, o.Partial, o.Lost)
	}
	assertKeptWhole(t, ev)
	counters := topo.Counters()
	t.Logf("handshakes: accepted %.0f, refused %v; exporter failures %.0f", counters.HandshakesAccepted, counters.HandshakesRefused, counters.ExporterFailed)
	assert.Empty(t, counters.HandshakesRefused, "handshakes refused across the rotation")
	assert.Zero(t, counters.ExporterFailed, "spans the agents or gateways gave up on")
	assert.Greater(t, counters.HandshakesAccepted, float64(2*len(topo.Agents)), "connections were replaced after the rotation")

	for _, gw := range topo.Gateways {
		cfg, err := harness.ClientTLS(p.ca, &p.agentLeaf, harness.GatewayServerName)
		require.NoError(t, err)
		conn, err := tls.Dial("tcp", gw.OTLPEndpoint(), cfg)
		require.NoError(t, err, "%s: a handshake with the new agent certificate", gw.Name)
		served := conn.ConnectionState().PeerCertificates[0].SerialNumber
		conn.Close()
		assert.NotEqual(t, 0, served.Cmp(oldSerial), "%s still serves its first certificate", gw.Name)
		assert.Zero(t, served.Cmp(p.gatewayLeaf.Cert.SerialNumber), "%s serves the rotated certificate", gw.Name)
		assert.False(t, strings.Contains(gw.Proc.LogTail(200), "Refused a client"), "%s refused a client", gw.Name)
	}
}

// TestBackendsOverMutualTLS: the primary, the secondary and a sharded
// backend each require TLS with a client certificate of their own CA; the
// gateways' TLS variables reach all three, and each receives every
// interesting trace whole.
func TestBackendsOverMutualTLS(t *testing.T) {
	ca, err := harness.NewCA("backend-ca")
	require.NoError(t, err)
	serverLeaf, err := ca.Issue("backend", time.Now().Add(time.Hour), "backend.example")
	require.NoError(t, err)
	clientLeaf, err := ca.Issue("tailgate-gateway", time.Now().Add(time.Hour))
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "backend-tls")
	require.NoError(t, harness.WriteSecretDir(dir, ca.SecretData(clientLeaf)))
	serverTLS, err := harness.ServerTLS(serverLeaf, ca)
	require.NoError(t, err)
	newSink := func() *harness.Sink {
		s, err := harness.NewTLSSink(serverTLS)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		return s
	}
	primary, secondary, shard1, shard2 := newSink(), newSink(), newSink(), newSink()

	set := withGatewaySet(
		harness.BackendsSet("otlp_grpc/backend_memory", "otlp_grpc/backend_secondary", "load_balancing/backend_static"),
		"exporters::otlp_grpc/backend_memory::endpoint="+primary.Endpoint(),
		"exporters::otlp_grpc/backend_secondary::endpoint="+secondary.Endpoint(),
		"exporters::load_balancing/backend_static::resolver::static::hostnames=["+shard1.Endpoint()+", "+shard2.Endpoint()+"]",
	)
	for _, tls := range []string{"otlp_grpc/backend_memory::tls", "otlp_grpc/backend_secondary::tls", "load_balancing/backend_static::protocol::otlp::tls"} {
		set = append(set,
			"exporters::"+tls+"::insecure=false",
			"exporters::"+tls+"::ca_file="+filepath.Join(dir, "ca.crt"),
			"exporters::"+tls+"::cert_file="+filepath.Join(dir, "tls.crt"),
			"exporters::"+tls+"::key_file="+filepath.Join(dir, "tls.key"),
			"exporters::"+tls+"::server_name_override=backend.example",
		)
	}
	topo := startTopology(t, harness.TopologyConfig{Agents: 2, Gateways: 2, GatewaySet: set})
	plans := plan(t, 600, 72)
	sent := send(t, topo, plans)
	require.Zero(t, sent.SpansFailed, "agents refused spans")
	backends := map[string]interface {
		SpansOf(pcommon.TraceID) map[pcommon.SpanID]int
	}{"primary": primary, "secondary": secondary, "sharded": shards{shard1, shard2}}
	eventually(t, 2*time.Minute, "every backend holds the kept traces", func() (bool, string) {
		return primary.SpanCount() > 0 && secondary.SpanCount() > 0 && shard1.SpanCount() > 0 && shard2.SpanCount() > 0,
			fmt.Sprintf("spans: primary %d, secondary %d, shards %d+%d", primary.SpanCount(), secondary.SpanCount(), shard1.SpanCount(), shard2.SpanCount())
	})
	settle(t, topo, 3*time.Second, 2*time.Minute)
	for name, b := range backends {
		ev := harness.Evaluate(plans, sent, b)
		for _, k := range harness.Interesting {
			o := ev.ByKind[k]
			t.Logf("%-9s %-6s sent %4d complete %4d partial %d lost %d", name, k, o.Sent, o.Complete, o.Partial, o.Lost)
		}
		t.Run(name, func(t *testing.T) { assertKeptWhole(t, ev) })
	}
}
