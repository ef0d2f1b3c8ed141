// Certificate expiry — see cert_expiry.h.
#include "envelopefs/cert_expiry.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <memory>

#include "envelopefs/error.h"

namespace envelopefs {

int CertAlertDays(int64_t days_left) {
  int alert = 0;
  for (int days : kCertAlertDays) {
    if (days_left <= days) alert = days;
  }
  return alert;
}

CertExpiry CheckCertExpiry(const std::string& file, int64_t now) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(fopen(file.c_str(), "re"), fclose);
  if (!f) ThrowSystemError(file + ": cannot read the client certificate (--tls-cert)");
  std::unique_ptr<X509, void (*)(X509*)> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr),
                                              X509_free);
  ERR_clear_error();
  if (!cert) {
    throw Error(ErrorKind::kUsage, file +
                                       ": no PEM certificate in the client certificate file "
                                       "(--tls-cert)");
  }
  tm t{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &t) != 1) {
    throw Error(ErrorKind::kUsage, file + ": the certificate's expiry date cannot be read");
  }
  CertExpiry out;
  out.file = file;
  out.not_after = static_cast<int64_t>(timegm(&t));
  int64_t left = out.not_after - now;
  out.days_left = left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
  out.alert_days = CertAlertDays(out.days_left);
  return out;
}

}  // namespace envelopefs
