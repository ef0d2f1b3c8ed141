// KmipServerTest — the gtest fixture of the KMIP tests (kmip_client_test.cc,
// kmip_source_test.cc): a test CA (test_pki.h) with certificates "kms" (the server, for
// 127.0.0.1) and "client", and PyKMIP's server running with them (KmipTestServer) for the
// test's length, in a directory the test owns. Not thread-safe (gtest assertions).
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "kmip_test_server.h"
#include "mount_fixture.h"
#include "test_pki.h"

namespace envelopefs::testing {

class KmipServerTest : public ::testing::Test {
 protected:
  void SetUp() override;

  TempDir dir_;
  TestPki pki_{dir_.path(), "ca"};
  std::unique_ptr<KmipTestServer> server_;
};

}  // namespace envelopefs::testing
