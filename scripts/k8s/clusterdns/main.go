// Command clusterdns is the test cluster's DNS (what CoreDNS's kubernetes plugin does, for the
// records Rheo needs): it watches Services and EndpointSlices and answers
//
//	SERVICE.NAMESPACE.svc.cluster.local  A  the cluster IP, or for a headless Service the
//	                                        addresses of its ready endpoints
//	HOST.SERVICE.NAMESPACE.svc.cluster.local  A  an endpoint with that hostname
//
// Every other name under the cluster domain is NXDOMAIN; names outside it are REFUSED (the
// cluster has no way out, so there is nothing to forward to). The kubelet points pods at it
// (clusterDNS), so a JobManager is found by its Service name as on any real cluster.
package main

import (
	"flag"
	"log"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

const ttl = 5

type resolver struct {
	domain   string // "cluster.local."
	services cache.Store
	slices   cache.Indexer
}

// lookup returns the A addresses of name, and whether the name exists.
func (r *resolver) lookup(name string) ([]net.IP, bool) {
	rest, ok := strings.CutSuffix(strings.ToLower(name), ".svc."+r.domain)
	if !ok {
		return nil, false
	}
	labels := strings.Split(rest, ".")
	var host, svc, ns string
	switch len(labels) {
	case 2:
		svc, ns = labels[0], labels[1]
	case 3:
		host, svc, ns = labels[0], labels[1], labels[2]
	default:
		return nil, false
	}
	obj, exists, _ := r.services.GetByKey(ns + "/" + svc)
	if !exists {
		return nil, false
	}
	s := obj.(*corev1.Service)
	if host == "" && s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
		return []net.IP{net.ParseIP(s.Spec.ClusterIP)}, true
	}
	slices, _ := r.slices.ByIndex("service", ns+"/"+svc)
	var ips []net.IP
	found := host == ""
	for _, o := range slices {
		for _, ep := range o.(*discoveryv1.EndpointSlice).Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if host != "" && (ep.Hostname == nil || *ep.Hostname != host) {
				continue
			}
			found = true
			if !ready && !s.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, a := range ep.Addresses {
				if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips, found
}

func (r *resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if name != r.domain && !strings.HasSuffix(name, "."+r.domain) {
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	ips, exists := r.lookup(name)
	if !exists {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{r.soa()}
	} else if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		for _, ip := range ips {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip})
		}
	} else {
		m.Ns = []dns.RR{r.soa()} // the name exists, without records of that type (e.g. AAAA)
	}
	_ = w.WriteMsg(m)
}

func (r *resolver) soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: r.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns.dns." + r.domain, Mbox: "hostmaster." + r.domain, Serial: 1, Refresh: 60, Retry: 10,
		Expire: 3600, Minttl: ttl}
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	listen := flag.String("listen", "10.88.0.1:53", "address to answer on (UDP and TCP)")
	domain := flag.String("domain", "cluster.local", "the cluster domain")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig %s: %v", *kubeconfig, err)
	}
	client := kubernetes.NewForConfigOrDie(config)
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	services := factory.Core().V1().Services().Informer()
	slices := factory.Discovery().V1().EndpointSlices().Informer()
	if err := slices.AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		s := obj.(*discoveryv1.EndpointSlice)
		if svc, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
			return []string{s.Namespace + "/" + svc}, nil
		}
		return nil, nil
	}}); err != nil {
		log.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, services.HasSynced, slices.HasSynced) {
		log.Fatal("the Service and EndpointSlice caches did not sync")
	}
	r := &resolver{domain: dns.Fqdn(*domain), services: services.GetStore(), slices: slices.GetIndexer()}
	errs := make(chan error, 2)
	for _, network := range []string{"udp", "tcp"} {
		server := &dns.Server{Addr: *listen, Net: network, Handler: r}
		go func() { errs <- server.ListenAndServe() }()
	}
	log.Printf("clusterdns: answering %s on %s (udp, tcp)", r.domain, *listen)
	log.Fatal(<-errs)
}
