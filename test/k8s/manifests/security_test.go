package manifests

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tailgate-dev/tailgate/test/harness"
	"github.com/tailgate-dev/tailgate/test/k8s/render"
	"github.com/tailgate-dev/tailgate/test/profile"
)

// securedTiers is the base rendered with the mtls component.
type securedTiers struct {
	agent        *appsv1.DaemonSet
	gateway      *appsv1.Deployment
	headless     *corev1.Service
	certificates map[string]*unstructured.Unstructured // cert-manager Certificates by name
	issuers      map[string]*unstructured.Unstructured
}

func withMTLS(t *testing.T) securedTiers {
	t.Helper()
	objs, err := render.Overlay(t.TempDir(), []string{"mtls"}, "")
	require.NoError(t, err)
	s := securedTiers{certificates: map[string]*unstructured.Unstructured{}, issuers: map[string]*unstructured.Unstructured{}}
	for _, u := range objs {
		switch {
		case u.GetKind() == "DaemonSet":
			s.agent = &appsv1.DaemonSet{}
			require.NoError(t, render.Strict(u, s.agent))
		case u.GetKind() == "Deployment":
			s.gateway = &appsv1.Deployment{}
			require.NoError(t, render.Strict(u, s.gateway))
		case u.GetKind() == "Service" && u.GetName() == "tailgate-gateway-headless":
			s.headless = &corev1.Service{}
			require.NoError(t, render.Strict(u, s.headless))
		case u.GetKind() == "Certificate":
			s.certificates[u.GetName()] = u
		case u.GetKind() == "Issuer":
			s.issuers[u.GetName()] = u
		}
		if strings.HasPrefix(u.GetAPIVersion(), "cert-manager.io/") {
			assert.Equal(t, "observability", u.GetNamespace(), "%s %s", u.GetKind(), u.GetName())
		}
	}
	require.NotNil(t, s.agent)
	require.NotNil(t, s.gateway)
	require.NotNil(t, s.headless)
	return s
}

// mountedSecret is the Secret mounted at the directory holding file, and
// the volume's mode.
func mountedSecret(t *testing.T, spec corev1.PodSpec, file string) (string, int32) {
	t.Helper()
	c := spec.Containers[0]
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(file) {
			continue
		}
		assert.True(t, m.ReadOnly, "%s mounted read-only", m.MountPath)
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				require.NotNil(t, v.Secret.DefaultMode)
				return v.Secret.SecretName, *v.Secret.DefaultMode
			}
		}
	}
	t.Fatalf("no Secret mounted at %s", path.Dir(file))
	return "", 0
}

func str(u *unstructured.Unstructured, fields ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, fields...)
	return v
}

// certificateFor is the Certificate whose Secret is secretName.
func (s securedTiers) certificateFor(t *testing.T, secretName string) *unstructured.Unstructured {
	t.Helper()
	for _, c := range s.certificates {
		if str(c, "spec", "secretName") == secretName {
			return c
		}
	}
	t.Fatalf("no Certificate makes Secret %s", secretName)
	return nil
}

// mtlsOverlay is the component's overlay of tier, after checking that the
// tier's container reads it last, from a volume of the component's
// ConfigMap tailgate-<tier>-mtls.
func mtlsOverlay(t *testing.T, spec corev1.PodSpec, tier string) []string {
	t.Helper()
	c := spec.Containers[0]
	path := "/etc/tailgate-mtls/" + tier + "-config.yaml"
	require.GreaterOrEqual(t, len(c.Args), 2)
	assert.Equal(t, []string{"--config", path}, c.Args[len(c.Args)-2:], "the mTLS overlay is the last --config")
	var volume string
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/tailgate-mtls" {
			volume = m.Name
		}
	}
	require.NotEmpty(t, volume, "nothing mounted at /etc/tailgate-mtls")
	for _, v := range spec.Volumes {
		if v.Name == volume {
			require.NotNil(t, v.ConfigMap, "volume %s", volume)
			assert.True(t, strings.HasPrefix(v.ConfigMap.Name, "tailgate-"+tier+"-mtls-"), "volume %s is from %s", volume, v.ConfigMap.Name)
		}
	}
	return []string{harness.MTLSOverlay(tier)}
}

// TestMTLSComponent: the component's files meet: the gateways' profile,
// as the binary expands it with the patched env, serves mutual TLS from the
// files of the Secret mounted where it reads them, with OTLP/HTTP off; the
// agents present and verify from their own Secret by the name on the
// gateways' certificate, which is the headless Service's; each Secret is
// made by a Certificate of the one CA Issuer, itself backed by a CA
// Certificate; keys are readable by the container's group only.
func TestMTLSComponent(t *testing.T) {
	s := withMTLS(t)

	gwSpec := s.gateway.Spec.Template.Spec
	gw, err := profile.EffectiveWith("gateway", containerEnv(t, gwSpec.Containers[0]), mtlsOverlay(t, gwSpec, "gateway"))
	require.NoError(t, err)
	tls := profile.Get(gw, "extensions", "mtls_server", "tls")
	require.NotNil(t, tls, "mtls_server's tls is on")
	assert.Contains(t, profile.Get(gw, "service", "extensions"), "mtls_server")
	assert.Equal(t, []any{map[string]any{"id": "mtls_server"}}, profile.Get(gw, "receivers", "otlp", "protocols", "grpc", "middlewares"))
	assert.Nil(t, profile.Get(gw, "receivers", "otlp", "protocols", "http"), "OTLP/HTTP off")
	gwSecret, mode := mountedSecret(t, gwSpec, profile.Get(tls, "cert_file").(string))
	for _, key := range []string{"key_file", "client_ca_file"} {
		secret, _ := mountedSecret(t, gwSpec, profile.Get(tls, key).(string))
		assert.Equal(t, gwSecret, secret, key)
	}
	assert.Equal(t, []string{"tls.crt", "tls.key", "ca.crt"}, []string{
		path.Base(profile.Get(tls, "cert_file").(string)), path.Base(profile.Get(tls, "key_file").(string)),
		path.Base(profile.Get(tls, "client_ca_file").(string)),
	}, "the files of a TLS Secret")
	assert.Equal(t, int32(0o440), mode)
	assert.Equal(t, int64(10001), *gwSpec.SecurityContext.FSGroup, "the key's group is the container's")

	agSpec := s.agent.Spec.Template.Spec
	agEnv := containerEnv(t, agSpec.Containers[0])
	ag, err := profile.EffectiveWith("agent", agEnv, mtlsOverlay(t, agSpec, "agent"))
	require.NoError(t, err)
	clientTLS := profile.Get(ag, "exporters", "load_balancing/k8s", "protocol", "otlp", "tls")
	agSecret, mode := mountedSecret(t, agSpec, profile.Get(clientTLS, "cert_file").(string))
	for _, key := range []string{"key_file", "ca_file"} {
		secret, _ := mountedSecret(t, agSpec, profile.Get(clientTLS, key).(string))
		assert.Equal(t, agSecret, secret, key)
	}
	assert.Equal(t, int32(0o440), mode)
	require.NotNil(t, agSpec.SecurityContext.FSGroup)
	assert.Equal(t, *agSpec.SecurityContext.RunAsGroup, *agSpec.SecurityContext.FSGroup, "the key's group is the container's")

	serverName := profile.Get(clientTLS, "server_name_override")
	assert.Equal(t, s.headless.Name+"."+s.headless.Namespace+".svc", serverName, "the agents verify the headless Service's name")
	assert.Equal(t, harness.GatewayServerName, serverName, "the e2e tests' certificates name the same")

	gwCert, agCert := s.certificateFor(t, gwSecret), s.certificateFor(t, agSecret)
	dnsNames, _, _ := unstructured.NestedStringSlice(gwCert.Object, "spec", "dnsNames")
	assert.Contains(t, dnsNames, serverName, "the gateways' certificate names what the agents verify")
	usages := func(c *unstructured.Unstructured) []string {
		u, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "usages")
		return u
	}
	assert.Contains(t, usages(gwCert), "server auth")
	assert.Contains(t, usages(agCert), "client auth")
	assert.NotContains(t, usages(agCert), "server auth", "an agent's key cannot pose as a gateway")
	issuer := str(gwCert, "spec", "issuerRef", "name")
	assert.Equal(t, issuer, str(agCert, "spec", "issuerRef", "name"), "one CA for both tiers")
	caSecret := str(s.issuers[issuer], "spec", "ca", "secretName")
	require.NotEmpty(t, caSecret, "Issuer %s is a CA issuer", issuer)
	ca := s.certificateFor(t, caSecret)
	isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA")
	assert.True(t, isCA)
	_, selfSigned, _ := unstructured.NestedMap(s.issuers[str(ca, "spec", "issuerRef", "name")].Object, "spec", "selfSigned")
	assert.True(t, selfSigned, "the CA signs itself")
}

// TestMTLSComponentLeavesTheBaseAlone: without the component the base
// stays plaintext with OTLP/HTTP on, so the base still runs anywhere.
func TestMTLSComponentLeavesTheBaseAlone(t *testing.T) {
	m := load(t)
	gw, err := profile.Effective("gateway", containerEnv(t, m.gateway.Spec.Template.Spec.Containers[0]))
	require.NoError(t, err)
	assert.Nil(t, profile.Get(gw, "extensions", "mtls_server", "tls"), "mtls_server off")
	assert.NotNil(t, profile.Get(gw, "receivers", "otlp", "protocols", "http"), "OTLP/HTTP on")
}

// TestNetworkPolicies: the policies select the pods they are written for,
// admit to the gateways' OTLP port exactly the agents' pods, leave the
// gateways' OTLP/HTTP port closed, admit the ports the ServiceMonitor
// scrapes from the monitoring namespace, and admit OTLP to the agents from
// every namespace; every named port is one of the pod's.
func TestNetworkPolicies(t *testing.T) {
	objs, err := render.Overlay(t.TempDir(), []string{"network-policies", "monitoring"}, "")
	require.NoError(t, err)
	m := load(t)
	policies := map[string]*networkingv1.NetworkPolicy{}
	var scraped []string
	for _, u := range objs {
		switch u.GetKind() {
		case "NetworkPolicy":
			require.NoError(t, decodeNamed(u, policies))
			assert.Equal(t, "observability", u.GetNamespace())
		case "ServiceMonitor":
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
			for _, ep := range eps {
				scraped = append(scraped, ep.(map[string]any)["port"].(string))
			}
		}
	}
	require.Len(t, policies, 2)
	require.NotEmpty(t, scraped)

	matches := func(sel metav1.LabelSelector, pod corev1.PodTemplateSpec) bool {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		require.NoError(t, err)
		return s.Matches(labels.Set(pod.Labels))
	}
	gwPod, agPod := m.gateway.Spec.Template, m.agent.Spec.Template
	// admitted are the container ports the policy opens to a peer, by name.
	admitted := func(p *networkingv1.NetworkPolicy, pod corev1.PodTemplateSpec, peer func(networkingv1.NetworkPolicyPeer) bool) []string {
		var out []string
		for _, rule := range p.Spec.Ingress {
			if !slices.ContainsFunc(rule.From, peer) {
				continue
			}
			for _, port := range rule.Ports {
				require.NotNil(t, port.Port)
				require.NotZero(t, containerPort(pod.Spec.Containers[0], port.Port.StrVal), "port %s is a named port of the pod", port.Port.StrVal)
				out = append(out, port.Port.StrVal)
			}
		}
		return out
	}
	isAgent := func(peer networkingv1.NetworkPolicyPeer) bool {
		return peer.PodSelector != nil && peer.NamespaceSelector == nil && matches(*peer.PodSelector, agPod)
	}
	isMonitoring := func(peer networkingv1.NetworkPolicyPeer) bool {
		return peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring"
	}
	anyPod := func(peer networkingv1.NetworkPolicyPeer) bool {
		return peer.NamespaceSelector != nil && len(peer.NamespaceSelector.MatchLabels) == 0 && len(peer.NamespaceSelector.MatchExpressions) == 0 && peer.PodSelector == nil
	}

	gw := policies["tailgate-gateway"]
	require.NotNil(t, gw)
	assert.True(t, matches(gw.Spec.PodSelector, gwPod))
	assert.False(t, matches(gw.Spec.PodSelector, agPod))
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, gw.Spec.PolicyTypes)
	assert.Equal(t, []string{"otlp-grpc"}, admitted(gw, gwPod, isAgent), "agents reach the gateways' OTLP/gRPC only")
	assert.ElementsMatch(t, scraped, admitted(gw, gwPod, isMonitoring), "Prometheus reaches every port it scrapes")
	for _, rule := range gw.Spec.Ingress {
		for _, peer := range rule.From {
			assert.True(t, isAgent(peer) || isMonitoring(peer), "a gateway admits agents and monitoring only: %+v", peer)
		}
	}

	ag := policies["tailgate-agent"]
	require.NotNil(t, ag)
	assert.True(t, matches(ag.Spec.PodSelector, agPod))
	assert.False(t, matches(ag.Spec.PodSelector, gwPod))
	assert.ElementsMatch(t, []string{"otlp-grpc", "otlp-http"}, admitted(ag, agPod, anyPod), "applications anywhere reach the agents")
	assert.Equal(t, []string{"telemetry"}, admitted(ag, agPod, isMonitoring))
}
