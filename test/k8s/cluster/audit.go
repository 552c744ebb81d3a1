package cluster

import (
	"bufio"
	"encoding/json"
	"os"
)

// auditPolicyYAML has the API server record the metadata of every request
// a ServiceAccount makes, and nothing else.
const auditPolicyYAML = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
`

// podUIDExtra is the key under which the API server puts the UID of the pod
// a bound ServiceAccount token belongs to in the user's extra info.
const podUIDExtra = "authentication.kubernetes.io/pod-uid"

// Request is one API request as the audit log recorded it.
type Request struct {
	User     string // e.g. system:serviceaccount:observability:tailgate-agent
	Verb     string // get, list, watch, ...
	APIGroup string // "" for the core group
	Resource string
	Code     int // the response's status code
	// PodUID is the pod whose bound ServiceAccount token made the request
	// (the TokenRequest the kubelet makes binds it to the pod); "" for any
	// other credential.
	PodUID string
}

type auditEvent struct {
	User struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"user"`
	Verb      string `json:"verb"`
	ObjectRef *struct {
		Resource string `json:"resource"`
		APIGroup string `json:"apiGroup"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// Requests lists the resource requests the given user has made so far
// (requests for non-resource URLs such as /version are left out).
func (cp *ControlPlane) Requests(user string) ([]Request, error) {
	f, err := os.Open(cp.AuditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, err
		}
		if ev.User.Username != user || ev.ObjectRef == nil {
			continue
		}
		r := Request{User: user, Verb: ev.Verb, APIGroup: ev.ObjectRef.APIGroup, Resource: ev.ObjectRef.Resource, Code: ev.ResponseStatus.Code}
		if uid := ev.User.Extra[podUIDExtra]; len(uid) == 1 {
			r.PodUID = uid[0]
		}
		out = append(out, r)
	}
	return out, sc.Err()
}
