// sink: a minimal Pyroscope-shaped HTTP target for remote-write benchmarks and tests. It stands in
// for a target on another machine: it reads each POST body, counts the profiles it got per path and
// per profile id, and answers 200 without further work, so that its CPU cost stays small beside the
// relay's on a shared machine.
//
// Usage: sink -addr 127.0.0.1:0 [-tls-cert cert.pem -tls-key key.pem]  (HTTPS with both)
// It prints one line "listening <host:port>" on stdout once it accepts connections.
// GET /stats answers {"requests": N, "bytes": B, "by_path": {...}, "distinct_ids": D}.
// GET /requests answers the first 10,000 requests it counted, each as {"path", "query" (raw),
// "headers" (every header, canonical names, values joined by ", "), "body_sha256", "body_bytes"}.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

const keptRequests = 10000

type request struct {
	Path       string            `json:"path"`
	Query      string            `json:"query"`
	Headers    map[string]string `json:"headers"`
	BodySHA256 string            `json:"body_sha256"`
	BodyBytes  int64             `json:"body_bytes"`
}

type stats struct {
	mu       sync.Mutex
	requests int64
	bytes    int64
	byPath   map[string]int64
	ids      map[string]struct{}
	kept     []request
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	certFile := flag.String("tls-cert", "", "serve HTTPS with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "and this private key (PEM)")
	flag.Parse()
	st := &stats{byPath: map[string]int64{}, ids: map[string]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		out := map[string]interface{}{
			"requests":     st.requests,
			"bytes":        st.bytes,
			"by_path":      st.byPath,
			"distinct_ids": len(st.ids),
		}
		st.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/requests", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		out := append([]request{}, st.kept...)
		st.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		digest := sha256.New()
		n, err := io.Copy(digest, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		st.mu.Lock()
		if len(st.kept) < keptRequests {
			headers := map[string]string{}
			for name, values := range r.Header {
				headers[name] = strings.Join(values, ", ")
			}
			st.kept = append(st.kept, request{
				Path:       r.URL.Path,
				Query:      r.URL.RawQuery,
				Headers:    headers,
				BodySHA256: hex.EncodeToString(digest.Sum(nil)),
				BodyBytes:  n,
			})
		}
		st.requests++
		st.bytes += n
		st.byPath[r.URL.Path]++
		if id := r.Header.Get("X-Pyro-Core-Profile-Id"); id != "" {
			st.ids[id] = struct{}{}
		}
		st.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr().String())
	os.Stdout.Sync()
	if *certFile != "" {
		err = http.ServeTLS(ln, mux, *certFile, *keyFile)
	} else {
		err = http.Serve(ln, mux)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
