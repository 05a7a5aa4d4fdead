// Command meshyaml reads mesh config texts the way istiod does (pkg/config/mesh:
// sigs.k8s.io/yaml.YAMLToJSON, then the JSON into MeshConfig) and prints, for each file named on
// the command line, one JSON line: {"json": <the document as JSON>} or {"error": "<message>"}.
// The Rust tests (tests/mesh_surgical.rs) compare before and after texts through it.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	out := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[1:] {
		text, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		line := map[string]interface{}{}
		js, err := yaml.YAMLToJSON(text)
		if err != nil {
			line["error"] = err.Error()
		} else {
			line["json"] = json.RawMessage(js)
		}
		if err := out.Encode(line); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
