// xdsclient asks istiod, over its plaintext gRPC port on loopback, what it would send a proxy, and
// prints a JSON summary the platform suite asserts on: every cluster (with the SNI and whether its
// upstream TLS is Istio mutual TLS: the SDS "default" certificate and the "ROOTCA" validation
// context), every endpoint of the EDS clusters asked for, and the PCDS trust bundle when istiod
// sends one; with --lds, the inbound listener's filter chains with their RBAC filter configs
// (network and HTTP, as protojson) for the suite to judge with Envoy's semantics. It is a test tool: it never talks to anything but the address it is given.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

const (
	cdsType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	edsType  = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	pcdsType = "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig"
	ldsType  = "type.googleapis.com/envoy.config.listener.v3.Listener"
)

type clusterOut struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	SNI         string `json:"sni,omitempty"`
	IstioMutual bool   `json:"istioMutual"`
	TLSMatches  int    `json:"tlsMatches"`
}

type endpointOut struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	Network string `json:"network,omitempty"`
}

// rbacOut is one RBAC filter of an inbound filter chain: its name (envoy.filters.network.rbac or
// envoy.filters.http.rbac) and its typed config as protojson.
type rbacOut struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
}

// chainOut is one filter chain of the inbound listener: what it matches and its RBAC filters in
// the order Envoy runs them (network filters, then the HTTP filters of its connection manager).
type chainOut struct {
	Name              string    `json:"name"`
	DestinationPort   uint32    `json:"destinationPort,omitempty"`
	TransportProtocol string    `json:"transportProtocol,omitempty"`
	ServerNames       []string  `json:"serverNames,omitempty"`
	ALPN              []string  `json:"applicationProtocols,omitempty"`
	HTTP              bool      `json:"http"`
	RBAC              []rbacOut `json:"rbac"`
}

type out struct {
	Clusters  []clusterOut             `json:"clusters"`
	Endpoints map[string][]endpointOut `json:"endpoints"`
	TrustPEMs []string                 `json:"trustBundle"`
	Inbound   []chainOut               `json:"inbound,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:15010", "istiod's plaintext xDS address (loopback)")
	kind := flag.String("kind", "sidecar", "proxy type: sidecar or router")
	ns := flag.String("namespace", "default", "the proxy's namespace")
	ip := flag.String("ip", "127.0.0.9", "the proxy's IP (an identifier only; nothing connects to it)")
	clusterID := flag.String("cluster-id", "Kubernetes", "the proxy's CLUSTER_ID")
	network := flag.String("network", "", "the proxy's network")
	eds := flag.String("eds", "", "comma-separated EDS cluster names to ask for ('outbound' = every outbound EDS cluster)")
	pcds := flag.Bool("pcds", false, "also ask for the PCDS trust bundle")
	lds := flag.Bool("lds", false, "also ask for the listeners and print the inbound filter chains' RBAC filters")
	labels := flag.String("labels", "app=xdsclient", "the proxy's workload labels, k=v[,k=v...]")
	sa := flag.String("service-account", "default", "the proxy's service account")
	timeout := flag.Duration("timeout", 20*time.Second, "overall deadline")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.") && !strings.HasPrefix(*addr, "[::1]") && !strings.HasPrefix(*addr, "localhost:") {
		fail(fmt.Errorf("refusing non-loopback address %q", *addr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := run(ctx, *addr, node(*kind, *ns, *ip, *clusterID, *network, *labels, *sa), *eds, *pcds, *lds)
	if err != nil {
		fail(err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "xdsclient:", err)
	os.Exit(1)
}

func node(kind, ns, ip, clusterID, network, labels, sa string) *core.Node {
	lm := map[string]any{}
	for _, kv := range strings.Split(labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			lm[k] = v
		}
	}
	meta := map[string]any{
		"NAMESPACE":       ns,
		"CLUSTER_ID":      clusterID,
		"ISTIO_VERSION":   "1.30.0",
		"LABELS":          lm,
		"INSTANCE_IPS":    ip,
		"SERVICE_ACCOUNT": sa,
	}
	if network != "" {
		meta["NETWORK"] = network
	}
	if kind == "router" {
		meta["LABELS"] = map[string]any{"istio": "ingressgateway"}
	}
	st, err := structpb.NewStruct(meta)
	if err != nil {
		fail(err)
	}
	return &core.Node{
		Id:       fmt.Sprintf("%s~%s~xdsclient.%s~%s.svc.cluster.local", kind, ip, ns, ns),
		Metadata: st,
	}
}

func run(ctx context.Context, addr string, n *core.Node, eds string, pcds, lds bool) (*out, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	res := &out{Endpoints: map[string][]endpointOut{}, Clusters: []clusterOut{}, TrustPEMs: []string{}}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: cdsType}); err != nil {
		return nil, err
	}
	resp, err := recvType(stream, cdsType)
	if err != nil {
		return nil, err
	}
	var edsNames []string
	for _, a := range resp.Resources {
		c := &cluster.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, err
		}
		co := summarize(c)
		res.Clusters = append(res.Clusters, co)
		if co.Type == "EDS" && (eds == "outbound" && strings.HasPrefix(c.Name, "outbound|") || contains(eds, c.Name)) {
			edsNames = append(edsNames, c.Name)
		}
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: cdsType, ResponseNonce: resp.Nonce, VersionInfo: resp.VersionInfo}); err != nil {
		return nil, err
	}
	if len(edsNames) > 0 {
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: edsNames}); err != nil {
			return nil, err
		}
		r, err := recvType(stream, edsType)
		if err != nil {
			return nil, err
		}
		for _, a := range r.Resources {
			cla := &endpoint.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(cla); err != nil {
				return nil, err
			}
			res.Endpoints[cla.ClusterName] = endpoints(cla)
		}
	}
	if pcds {
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: pcdsType}); err != nil {
			return nil, err
		}
		r, err := recvType(stream, pcdsType)
		if err != nil {
			return nil, err
		}
		for _, a := range r.Resources {
			pc := &meshconfig.ProxyConfig{}
			if err := proto.Unmarshal(a.Value, pc); err != nil {
				return nil, err
			}
			for _, c := range pc.GetCaCertificatesPem() {
				res.TrustPEMs = append(res.TrustPEMs, c)
			}
		}
	}
	if lds {
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: ldsType}); err != nil {
			return nil, err
		}
		r, err := recvType(stream, ldsType)
		if err != nil {
			return nil, err
		}
		for _, a := range r.Resources {
			l := &listener.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return nil, err
			}
			if l.Name != "virtualInbound" {
				continue
			}
			for _, fc := range l.FilterChains {
				c, err := inboundChain(fc)
				if err != nil {
					return nil, fmt.Errorf("listener %s chain %s: %w", l.Name, fc.Name, err)
				}
				res.Inbound = append(res.Inbound, c)
			}
		}
	}
	return res, nil
}

// inboundChain summarizes one inbound filter chain and its RBAC filters.
func inboundChain(fc *listener.FilterChain) (chainOut, error) {
	m := fc.GetFilterChainMatch()
	c := chainOut{Name: fc.Name, DestinationPort: m.GetDestinationPort().GetValue(),
		TransportProtocol: m.GetTransportProtocol(), ServerNames: m.GetServerNames(),
		ALPN: m.GetApplicationProtocols(), RBAC: []rbacOut{}}
	for _, f := range fc.Filters {
		switch {
		case f.GetTypedConfig().MessageIs(&netrbac.RBAC{}):
			cfg := &netrbac.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				return c, err
			}
			j, err := protojson.Marshal(cfg)
			if err != nil {
				return c, err
			}
			c.RBAC = append(c.RBAC, rbacOut{Name: f.Name, Config: j})
		case f.GetTypedConfig().MessageIs(&hcm.HttpConnectionManager{}):
			c.HTTP = true
			h := &hcm.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
				return c, err
			}
			for _, hf := range h.HttpFilters {
				if !hf.GetTypedConfig().MessageIs(&httprbac.RBAC{}) {
					continue
				}
				cfg := &httprbac.RBAC{}
				if err := hf.GetTypedConfig().UnmarshalTo(cfg); err != nil {
					return c, err
				}
				j, err := protojson.Marshal(cfg)
				if err != nil {
					return c, err
				}
				c.RBAC = append(c.RBAC, rbacOut{Name: hf.Name, Config: j})
			}
		}
	}
	return c, nil
}

func contains(list, name string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == name {
			return true
		}
	}
	return false
}

// recvType reads responses until one of the given type arrives (istiod may push others first).
func recvType(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, typeURL string) (*discovery.DiscoveryResponse, error) {
	for {
		r, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", typeURL, err)
		}
		if r.TypeUrl == typeURL {
			return r, nil
		}
	}
}

func summarize(c *cluster.Cluster) clusterOut {
	co := clusterOut{Name: c.Name, Type: c.GetType().String()}
	if c.GetEdsClusterConfig() != nil {
		co.Type = "EDS"
	}
	check := func(ts *core.TransportSocket) {
		if ts == nil || ts.GetTypedConfig() == nil {
			return
		}
		u := &tls.UpstreamTlsContext{}
		if ts.GetTypedConfig().UnmarshalTo(u) != nil {
			return
		}
		co.TLSMatches++
		if co.SNI == "" {
			co.SNI = u.Sni
		}
		ctx := u.GetCommonTlsContext()
		cert := false
		for _, s := range ctx.GetTlsCertificateSdsSecretConfigs() {
			cert = cert || s.GetName() == "default"
		}
		root := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName() == "ROOTCA" ||
			ctx.GetValidationContextSdsSecretConfig().GetName() == "ROOTCA"
		co.IstioMutual = co.IstioMutual || (cert && root)
	}
	check(c.GetTransportSocket())
	for _, m := range c.GetTransportSocketMatches() {
		check(m.GetTransportSocket())
	}
	return co
}

func endpoints(cla *endpoint.ClusterLoadAssignment) []endpointOut {
	eps := []endpointOut{}
	for _, l := range cla.Endpoints {
		for _, e := range l.LbEndpoints {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			eo := endpointOut{Address: sa.Address, Port: sa.GetPortValue()}
			if f := e.GetMetadata().GetFilterMetadata()["istio"]; f != nil {
				eo.Network = f.Fields["network"].GetStringValue()
			}
			eps = append(eps, eo)
		}
	}
	return eps
}
