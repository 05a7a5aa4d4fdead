// Package crds pins the API types tests/platform/build.sh generates the PrometheusRule CRD from
// (with controller-gen, the tool directive of this module).
package crds

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
