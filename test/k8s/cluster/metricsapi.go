package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/tailgate-dev/tailgate/test/harness"
)

// CustomMetricsAPI is prometheus-adapter serving custom.metrics.k8s.io and
// external.metrics.k8s.io from a Prometheus, registered with the cluster as
// a platform team installs it (its Helm chart with custom and external
// rules): a Service in the monitoring namespace and an APIService for each
// group, which the aggregation layer of kube-apiserver proxies to (verifying the adapter's certificate
// against the APIService's caBundle). The adapter runs as a process of the
// test on the node network, behind a selector-less Service with a
// hand-written EndpointSlice (no image of it is built here).
type CustomMetricsAPI struct {
	cp          *ControlPlane
	apiServices dynamic.ResourceInterface // the cluster's APIService objects
	proc        *harness.Process
}

const (
	adapterNamespace = "monitoring"
	adapterService   = "prometheus-adapter"
	// adapterAddress: the adapter stands for a pod (see StandInPodIP).
	adapterAddress = StandInPodIP
	// CustomMetricsAPIService and ExternalMetricsAPIService are the
	// APIServices the adapter serves.
	CustomMetricsAPIService   = "v1beta1.custom.metrics.k8s.io"
	ExternalMetricsAPIService = "v1beta1.external.metrics.k8s.io"
)

var adapterAPIServices = map[string]string{
	CustomMetricsAPIService:   "custom.metrics.k8s.io",
	ExternalMetricsAPIService: "external.metrics.k8s.io",
}

// StartCustomMetricsAPI starts prometheus-adapter (built once, cached by
// version) with its rules file, reading prometheusURL, registers it and
// waits until the aggregation layer reports it Available.
func StartCustomMetricsAPI(cp *ControlPlane, dir, prometheusURL, rulesFile string) (_ *CustomMetricsAPI, err error) {
	bin, err := harness.ToolBinary("prometheus-adapter", "prometheus-adapter")
	if err != nil {
		return nil, err
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		return nil, err
	}
	port := ports[0]
	cert, key, err := cp.PKI.IssueServingCert(adapterService, adapterNamespace)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return nil, err
	}
	m := &CustomMetricsAPI{cp: cp, apiServices: dyn.Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"})}
	defer func() {
		if err != nil {
			m.Stop()
		}
	}()
	if m.proc, err = harness.StartProcess(bin, harness.ProcessSpec{
		Name: "prometheus-adapter", LogDir: dir,
		Args: []string{
			"--prometheus-url=" + prometheusURL, "--config=" + rulesFile,
			// Series are listed from Prometheus at this interval: a new
			// gateway's metrics exist for the HPA only after a relist.
			"--metrics-relist-interval=10s",
			"--secure-port=" + strconv.Itoa(port), "--bind-address=" + adapterAddress,
			"--tls-cert-file=" + cert, "--tls-private-key-file=" + key,
			// Delegated authentication (the front proxy's CA comes from
			// kube-system/extension-apiserver-authentication) and
			// authorization, and the lister of the objects metrics describe.
			"--lister-kubeconfig=" + cp.Kubeconfig,
			"--authentication-kubeconfig=" + cp.Kubeconfig, "--authorization-kubeconfig=" + cp.Kubeconfig,
			"--v=1",
		},
	}); err != nil {
		return nil, err
	}
	if err := m.register(port); err != nil {
		return nil, err
	}
	return m, m.waitAvailable(2 * time.Minute)
}

func (m *CustomMetricsAPI) register(port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := m.cp.Client
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: adapterNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: adapterService, Namespace: adapterNamespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "https", Port: 443, TargetPort: intstr.FromInt32(int32(port)), Protocol: corev1.ProtocolTCP,
		}}},
	}
	if _, err := c.CoreV1().Services(adapterNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	name, ready, p := "https", true, int32(port)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: adapterService, Namespace: adapterNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: adapterService, discoveryv1.LabelManagedBy: "tailgate-test"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{adapterAddress}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &p}},
	}
	if _, err := c.DiscoveryV1().EndpointSlices(adapterNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return err
	}
	caBundle, err := os.ReadFile(m.cp.PKI.CACert)
	if err != nil {
		return err
	}
	for name, group := range adapterAPIServices {
		if _, err := m.apiServices.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{
				"service":              map[string]any{"namespace": adapterNamespace, "name": adapterService, "port": int64(443)},
				"group":                group,
				"version":              "v1beta1",
				"caBundle":             base64.StdEncoding.EncodeToString(caBundle),
				"groupPriorityMinimum": int64(100),
				"versionPriority":      int64(100),
			},
		}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// waitAvailable waits for each APIService's Available condition: the
// aggregation layer reached the adapter through the Service and trusted it.
func (m *CustomMetricsAPI) waitAvailable(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for name := range adapterAPIServices {
		last := ""
		for available := false; !available; {
			if time.Now().After(deadline) {
				return fmt.Errorf("APIService %s not available after %s (%s):\n%s", name, timeout, last, m.proc.LogTail(30))
			}
			if m.proc.Exited() {
				return fmt.Errorf("prometheus-adapter exited:\n%s", m.proc.LogTail(30))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s, err := m.apiServices.Get(ctx, name, metav1.GetOptions{})
			cancel()
			if err == nil {
				conditions, _, _ := unstructured.NestedSlice(s.Object, "status", "conditions")
				for _, c := range conditions {
					c, _ := c.(map[string]any)
					if c["type"] == "Available" {
						available = c["status"] == "True"
						last = fmt.Sprint(c["reason"], ": ", c["message"])
					}
				}
			}
			if !available {
				time.Sleep(250 * time.Millisecond)
			}
		}
	}
	return nil
}

// LogTail is the end of the adapter's log.
func (m *CustomMetricsAPI) LogTail(n int) string { return m.proc.LogTail(n) }

// Stop unregisters the API first (an APIService without a backend breaks
// API discovery for every client of the cluster), then stops the adapter
// and removes its Service and EndpointSlice.
func (m *CustomMetricsAPI) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name := range adapterAPIServices {
		_ = m.apiServices.Delete(ctx, name, metav1.DeleteOptions{})
	}
	if m.proc != nil {
		_ = m.proc.Stop(10 * time.Second)
	}
	_ = m.cp.Client.CoreV1().Services(adapterNamespace).Delete(ctx, adapterService, metav1.DeleteOptions{})
	_ = m.cp.Client.DiscoveryV1().EndpointSlices(adapterNamespace).Delete(ctx, adapterService, metav1.DeleteOptions{})
}

// RulesFile writes prometheus-adapter rules (its --config) under dir.
func RulesFile(dir string, rules []byte) (string, error) {
	path := filepath.Join(dir, "prometheus-adapter.yaml")
	return path, os.WriteFile(path, rules, 0o644)
}
