// Command x509oracle prints Go's verdict on root certificates the way istiod's
// verifyTrustAnchor reaches it: pem.Decode of the file, x509.ParseCertificate of the first block,
// then IsCA. One line per file argument, in order:
//
//	<file base name>\tca
//	<file base name>\tnot-ca
//	<file base name>\trefused: <Go's error>
//
// tests/go_oracle.rs builds it with the distribution's Go 1.23 (module mode, no network) and
// compares its output with testdata/go-oracle/expected.tsv.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func verdict(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return "refused: no PEM block"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "refused: " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	if !cert.IsCA {
		return "not-ca"
	}
	return "ca"
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: x509oracle FILE.pem...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		name := strings.TrimSuffix(filepath.Base(path), ".pem")
		fmt.Printf("%s\t%s\n", name, verdict(path))
	}
}
