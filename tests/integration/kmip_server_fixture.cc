// KmipServerTest — see kmip_server_fixture.h.
#include "kmip_server_fixture.h"

namespace envelopefs::testing {

void KmipServerTest::SetUp() {
  ASSERT_TRUE(PyKmipInstalled()) << "install python3-pykmip (scripts/install-deps)";
  pki_.Issue("kms", {}, {"127.0.0.1"});
  pki_.Issue("client");
  server_ = std::make_unique<KmipTestServer>(dir_.path() / "kms", pki_.cert("kms"),
                                             pki_.key_path("kms"), pki_.ca_file());
}

}  // namespace envelopefs::testing
