package rebalanceguardprocessor // import "github.com/tailgate-dev/tailgate/components/processor/rebalanceguardprocessor"

import (
	"errors"
	"fmt"
	"strings"
)

// parseK8sService splits `service` as the exporter does: "name",
// "name.namespace" or "name.namespace.svc.<cluster domain>".
func parseK8sService(service string) (name, ns string, nsGiven bool, err error) {
	parts := strings.Split(service, ".")
	if parts[0] == "" {
		return "", "", false, errors.New("resolver::k8s::service must name a Service")
	}
	name = parts[0]
	switch {
	case len(parts) > 1 && parts[1] != "":
		ns, nsGiven = parts[1], true
	case len(parts) > 2:
		return "", "", false, fmt.Errorf("resolver::k8s::service %q: namespace segment missing", service)
	}
	if len(parts) > 2 {
		if parts[2] != "svc" {
			return "", "", false, fmt.Errorf("resolver::k8s::service %q: the third DNS label must be 'svc'", service)
		}
		if len(parts) == 3 {
			return "", "", false, fmt.Errorf("resolver::k8s::service %q: cluster domain missing", service)
		}
	}
	return name, ns, nsGiven, nil
}
