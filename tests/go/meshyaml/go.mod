module meshyaml

go 1.23

require sigs.k8s.io/yaml v1.3.0

require gopkg.in/yaml.v2 v2.4.0 // indirect

replace sigs.k8s.io/yaml => /usr/share/gocode/src/sigs.k8s.io/yaml

replace gopkg.in/yaml.v2 => /usr/share/gocode/src/gopkg.in/yaml.v2
