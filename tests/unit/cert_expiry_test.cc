// Certificate expiry alerts (cert_expiry.h): the 30, 14 and 7-day thresholds and reading a
// certificate's expiry.
#include "envelopefs/cert_expiry.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "envelopefs/error.h"

namespace envelopefs {
namespace {

TEST(CertExpiry, ThresholdsAt30_14And7Days) {
  EXPECT_EQ(0, CertAlertDays(365));
  EXPECT_EQ(0, CertAlertDays(31));
  EXPECT_EQ(30, CertAlertDays(30));
  EXPECT_EQ(30, CertAlertDays(15));
  EXPECT_EQ(14, CertAlertDays(14));
  EXPECT_EQ(14, CertAlertDays(8));
  EXPECT_EQ(7, CertAlertDays(7));
  EXPECT_EQ(7, CertAlertDays(0));
  EXPECT_EQ(7, CertAlertDays(-3));  // expired
}

TEST(CertExpiry, AFileWithoutACertificateIsAUsageError) {
  const std::string path = ::testing::TempDir() + "/not-a-cert.pem";
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("hello\n", f);
  fclose(f);
  try {
    CheckCertExpiry(path, 0);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("no PEM certificate"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(CheckCertExpiry(path, 0), Error);
}

}  // namespace
}  // namespace envelopefs
