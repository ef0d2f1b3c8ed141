// Unit tests of the daemon's mount option lists (mount_options.h), mountinfo parsing
// (mount_table.h) and path containment (mount_checks.h). The mounted behaviour is in
// tests/integration/mount_safety_test.cc.
#include "mount_options.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "envelopefs/error.h"
#include "mount_checks.h"
#include "mount_table.h"

namespace envelopefs {
namespace {

const std::vector<DaemonOption> kDaemonOptions = {{"keyfile", true, 1},
                                                  {"insecure-keyfile", false, 2},
                                                  {"ro", false, 3},
                                                  {"seal-interval", true, 4}};

struct Split {
  std::vector<std::string> fuse;
  std::vector<std::pair<int, std::string>> applied;
};

Split SplitList(const std::string& list) {
  Split out;
  out.fuse = SplitMountOptions(list, kDaemonOptions, [&](int code, const std::string& value) {
    out.applied.emplace_back(code, value);
  });
  return out;
}

std::string ErrorOf(const std::string& list) {
  try {
    SplitList(list);
  } catch (const Error& e) {
    EXPECT_EQ(ErrorKind::kUsage, e.kind());
    return e.what();
  }
  return "";
}

TEST(MountOptionList, WhatMountFuse3PassesIsSplitIntoDaemonAndFuseOptions) {
  Split s = SplitList("rw,keyfile=/etc/lake.key,allow_other,dev,suid");
  EXPECT_EQ((std::vector<std::string>{"allow_other", "dev", "suid"}), s.fuse);
  ASSERT_EQ(1u, s.applied.size());
  EXPECT_EQ(std::make_pair(1, std::string("/etc/lake.key")), s.applied[0]);
}

TEST(MountOptionList, UnderscoreAndDashAreAlikeAndValuesKeepTheirEquals) {
  Split s = SplitList("insecure_keyfile,insecure-keyfile,seal_interval=3,keyfile=/k=ey,ro");
  EXPECT_TRUE(s.fuse.empty());
  EXPECT_EQ(
      (std::vector<std::pair<int, std::string>>{{2, ""}, {2, ""}, {4, "3"}, {1, "/k=ey"}, {3, ""}}),
      s.applied);
}

TEST(MountOptionList, FstabOptionsAreDropped) {
  Split s = SplitList(
      "defaults,auto,noauto,nofail,_netdev,user,users,nouser,owner,group,comment=x,"
      "x-systemd.automount,x-systemd.requires=a.mount,X-mount.mkdir,relatime,"
      "nodiratime,lazytime,,nosuid");
  EXPECT_EQ((std::vector<std::string>{"nosuid"}), s.fuse);
  EXPECT_TRUE(s.applied.empty());
}

TEST(MountOptionList, BadOptionsAreOneLineErrors) {
  EXPECT_EQ("unknown mount option bogus (see envelopefs --help)", ErrorOf("allow_other,bogus"));
  EXPECT_EQ("unknown mount option strictatime (see envelopefs --help)", ErrorOf("strictatime"));
  EXPECT_EQ("mount option keyfile needs a value (keyfile=...)", ErrorOf("keyfile"));
  EXPECT_EQ("mount option keyfile= needs a value (keyfile=...)", ErrorOf("keyfile="));
  EXPECT_EQ("mount option ro=1 takes no value", ErrorOf("ro=1"));
  EXPECT_NE(std::string::npos, ErrorOf("fsname=x").find("is set by envelopefs"));
  EXPECT_NE(std::string::npos, ErrorOf("subtype=x").find("is set by envelopefs"));
  EXPECT_EQ("unknown mount option context= (see envelopefs --help)", ErrorOf("context="));
}

TEST(MountOptionList, FsnameValuesAreEscapedForFuse) {
  EXPECT_EQ("/data/a\\,b\\\\c d", EscapeFuseOptionValue("/data/a,b\\c d"));
}

TEST(MountTable, MountInfoLinesAreParsedAndUnescaped) {
  MountEntry m;
  ASSERT_TRUE(ParseMountInfoLine(
      "42 27 0:39 / /tmp/m\\040nt rw,nosuid,nodev,relatime shared:1 master:2 - fuse.envelopefs "
      "/tmp/ci\\040pher,1\\134x rw,user_id=0,group_id=0,default_permissions",
      &m));
  EXPECT_EQ("0:39", m.device);
  EXPECT_EQ("/", m.root);
  EXPECT_EQ("/tmp/m nt", m.mount_point);
  EXPECT_EQ("fuse.envelopefs", m.fs_type);
  EXPECT_EQ("/tmp/ci pher,1\\x", m.source);
  EXPECT_TRUE(IsMountPoint({m}, "/tmp/m nt"));
  EXPECT_FALSE(IsMountPoint({m}, "/tmp/m\\040nt"));
  EXPECT_FALSE(ParseMountInfoLine("42 27 0:39 / /x rw no-separator-here", &m));
  EXPECT_FALSE(ParseMountInfoLine("", &m));
  // A backslash that does not start an octal escape is kept.
  ASSERT_TRUE(ParseMountInfoLine("1 2 0:1 / /a\\b\\7 rw - ext4 /dev/x rw", &m));
  EXPECT_EQ("/a\\b\\7", m.mount_point);
}

TEST(MountTable, TheRunningSystemHasARootMount) {
  EXPECT_TRUE(IsMountPoint(ReadMountTable(), "/"));
}

TEST(MountChecks, ContainmentIsByPathComponents) {
  EXPECT_TRUE(IsAtOrBelow("/data/cipher", "/data/cipher"));
  EXPECT_TRUE(IsAtOrBelow("/data/cipher/sub", "/data/cipher"));
  EXPECT_FALSE(IsAtOrBelow("/data/cipher2", "/data/cipher"));
  EXPECT_FALSE(IsAtOrBelow("/data", "/data/cipher"));
  EXPECT_TRUE(IsAtOrBelow("/anything", "/"));
}

}  // namespace
}  // namespace envelopefs
