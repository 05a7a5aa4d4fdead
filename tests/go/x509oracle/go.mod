module x509oracle

// go 1.23 matters: Go >= 1.23 refuses negative serial numbers only for modules that declare
// 1.23 or later (GODEBUG x509negativeserial); istiod is built that way.
go 1.23
