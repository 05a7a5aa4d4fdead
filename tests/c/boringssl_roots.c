/*
 * The BoringSSL oracle: loads each file named on the command line as Envoy loads a trusted CA
 * list (source/common/tls/cert_validator/default_validator.cc: PEM_X509_INFO_read_bio over the
 * whole text, then X509_STORE_add_cert for every certificate in it) and prints, per file, one
 * line "<file stem>\t<verdict>": "ok", or "refused: <BoringSSL's error>".
 *
 * Test-only: built by tests/boringssl_oracle.rs with the system C compiler against Debian's
 * android-libboringssl-dev (scripts/test-deps.sh installs it). Envoy fails the whole
 * validation context when one certificate of it fails to load, so one refused root costs
 * every peer's mutual TLS.
 */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
      buf = malloc((size_t)n + 1);
      if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
      }
      *len = n;
    }
  }
  fclose(f);
  return buf;
}

static void print_stem(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  size_t n = dot ? (size_t)(dot - base) : strlen(base);
  fwrite(base, 1, n, stdout);
}

static void print_error(void) {
  unsigned long e = ERR_get_error();
  char buf[256];
  if (e == 0) {
    printf("no error recorded");
    return;
  }
  ERR_error_string_n(e, buf, sizeof buf);
  printf("%s", buf);
  ERR_clear_error();
}

/* Envoy's loading of one trusted CA text; returns 1 when every step succeeds. */
static int load(const char *text, long len) {
  X509_STORE *store = X509_STORE_new();
  BIO *bio = BIO_new_mem_buf(text, (int)len);
  int ok = 0;
  STACK_OF(X509_INFO) *list = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
  if (list == NULL) {
    printf("refused: PEM_X509_INFO_read_bio: ");
    print_error();
    goto done;
  }
  int certs = 0;
  for (size_t i = 0; i < sk_X509_INFO_num(list); i++) {
    X509_INFO *item = sk_X509_INFO_value(list, i);
    if (item->x509 == NULL) continue;
    if (!X509_STORE_add_cert(store, item->x509)) {
      printf("refused: X509_STORE_add_cert: ");
      print_error();
      goto done;
    }
    certs++;
  }
  if (certs == 0) {
    printf("refused: no certificate");
    goto done;
  }
  printf("ok");
  ok = 1;
done:
  if (list != NULL) sk_X509_INFO_pop_free(list, X509_INFO_free);
  BIO_free(bio);
  X509_STORE_free(store);
  return ok;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    long len = 0;
    char *text = read_file(argv[i], &len);
    if (text == NULL) {
      fprintf(stderr, "%s: cannot read\n", argv[i]);
      return 2;
    }
    print_stem(argv[i]);
    printf("\t");
    load(text, len);
    printf("\n");
    free(text);
  }
  return 0;
}
