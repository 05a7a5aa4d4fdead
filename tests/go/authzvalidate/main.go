// authzvalidate runs istiod's own admission check of AuthorizationPolicies
// (istio.io/istio pkg/config/validation.ValidateAuthorizationPolicy, what istiod's /validate
// webhook calls) on the objects given on stdin as a JSON array, and prints one JSON line per
// object: its name, the error istiod would refuse it with, and any warning. A test tool: it reads
// stdin and writes stdout, nothing else.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	security "istio.io/api/security/v1beta1"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/validation"
)

type object struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

type verdict struct {
	Name    string `json:"name"`
	Error   string `json:"error,omitempty"`
	Warning string `json:"warning,omitempty"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var objs []object
	if err := json.Unmarshal(raw, &objs); err != nil {
		fmt.Fprintln(os.Stderr, "input is not a JSON array of objects:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, o := range objs {
		v := verdict{Name: o.Metadata.Name}
		spec := &security.AuthorizationPolicy{}
		// Unknown fields refused, as the API server's structural schema would prune them.
		if err := protojson.Unmarshal(o.Spec, spec); err != nil {
			v.Error = "spec: " + err.Error()
		} else {
			cfg := config.Config{
				Meta: config.Meta{
					GroupVersionKind: gvk.AuthorizationPolicy,
					Name:             o.Metadata.Name,
					Namespace:        o.Metadata.Namespace,
				},
				Spec: spec,
			}
			warn, err := validation.ValidateAuthorizationPolicy(cfg)
			if err != nil {
				v.Error = err.Error()
			}
			if warn != nil {
				v.Warning = warn.Error()
			}
		}
		if err := enc.Encode(v); err != nil {
			os.Exit(2)
		}
	}
}
